"""Foreign starting weights: torchvision ResNets and VGGs and Caffe VGGs,
read from plain array files, never from a pickle.

Starting points: EmoNet starts from an ImageNet VGG-16 (caud_thesis.txt
sec. 4.1; aunets_2017.txt sec. 3.1) and LP-Net's ResNet-34 stem from a
pretrained ResNet (lpnet_cvpr2019.txt sec. 3.1). Checkpoints of other
frameworks are often pickles (PyTorch .pth), which can run code when read;
au_jax reads only plain array files: `np.load(path, allow_pickle=False)`
for .npz, and a small reader of the safetensors format (8-byte
little-endian header size, a JSON header of {name: {dtype, shape,
data_offsets}}, raw little-endian data) for .safetensors. A .pth is read
only by the optional converters below, through `torch.load(path,
weights_only=True)` (tensors and plain containers only, no code).

Key layouts (`detect_layout` picks one by key names):

  'torchvision' VGG  torchvision.models.vgg16/vgg19 state_dict names:
                 features.<i>.weight [O, I, 3, 3], features.<i>.bias [O] for
                 the convs (i counts conv, ReLU and pool modules: VGG-16 uses
                 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                 classifier.{0,3,6}.weight [out, in] / .bias for fc6, fc7,
                 fc8. Inputs: RGB in [0, 1] normalised with mean (0.485,
                 0.456, 0.406) and std (0.229, 0.224, 0.225): set
                 config.pixel_mean / pixel_std to these.
  'torchvision' ResNet  torchvision.models.resnet18/34/50 names: conv1,
                 bn1, layer<s>.<i>.conv<k>, layer<s>.<i>.bn<k>,
                 layer<s>.<i>.downsample.0 (1x1 conv) / .1 (its batch-norm),
                 fc. Batch-norm weight/bias become params scale/bias and
                 running_mean/running_var become batch_stats mean/var
                 (num_batches_tracked is ignored), so evaluation mode
                 computes torchvision's eval-mode function. Same inputs as
                 torchvision's VGG.
  'caffe'        the VGG authors' Caffe layer names: conv1_1.weight ...
                 conv5_3.weight [O, I, 3, 3], fc6.weight, fc7.weight,
                 fc8.weight [out, in], each with .bias. Caffe VGG reads BGR
                 in [0, 255] minus the mean (103.939, 116.779, 123.68); the
                 loader reverses conv1_1's input channels so au_jax feeds RGB:
                 set pixel_mean = (123.68, 116.779, 103.939) / 255 and
                 pixel_std = (1/255,) * 3.

Making such a file from a PyTorch checkpoint (torch installed):

  python -m au_jax.weights pth-to-npz --input=resnet34.pth \
      --output=resnet34.npz

or, from torchvision itself:

  import numpy as np, torchvision
  net = torchvision.models.resnet34(weights='IMAGENET1K_V1')
  np.savez('resnet34_imagenet.npz',
           **{k: v.numpy() for k, v in net.state_dict().items()})

then set config.imagenet_weights to the file (`initial_variables`).

Conversions: conv kernels OIHW -> HWIO; dense kernels [out, in] -> [in, out];
a dense layer fed by a flattened map (VGG fc6) has its rows permuted from
the CHW flatten order of Caffe and PyTorch to flax's HWC order, so the
loaded network computes the same function (tests/test_weights_torchvision.py
and tests/test_vgg.py compare against independent forward passes).

The AUNets release (one VGG-16 per BP4D AU) becomes a run directory in
au_jax/releases.py.
"""

import argparse
import importlib
import importlib.util
import json
import os
import struct
import sys
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import ml_dtypes
import numpy as np

from au_jax import models
from au_jax.models import vgg

PyTree = Any
LAYOUTS = ('torchvision', 'caffe')

_FLOAT_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16}
# Integer tensors (e.g. batch-norm num_batches_tracked) keep their type.
_INT_DTYPES = {'I64': np.int64, 'I32': np.int32, 'I16': np.int16,
               'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}
_PICKLE_SUFFIXES = ('.pth', '.pt', '.pkl', '.pickle', '.ckpt', '.bin',
                    '.tar')


# ----------------------------------------------------------------------------
# Reading files


def read_arrays(path: str) -> dict[str, np.ndarray]:
  """All arrays of a .npz or .safetensors file, without unpickling.

  Floating-point tensors come back as float32; integer ones keep their type.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: a pickled checkpoint (.pth, .pkl, an .npz holding object
      arrays), another extension, a truncated or damaged file, or an
      unsupported dtype; each message names the file (and tensor) and, for
      pickles, how to convert them.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Weights file not found: {path}')
  if path.endswith('.npz'):
    return _read_npz(path)
  if path.endswith('.safetensors'):
    return _read_safetensors(path)
  if path.endswith(_PICKLE_SUFFIXES):
    stem = os.path.splitext(path)[0]
    raise ValueError(
        f'{path}: pickled checkpoints are not read (unpickling can run '
        'code). Convert it once where torch is installed: python -m '
        f'au_jax.weights pth-to-npz --input={path} --output={stem}.npz '
        '(torch.load with weights_only=True), or save its tensors with '
        'numpy.savez / safetensors.')
  raise ValueError(f'{path}: weights must be a .npz or .safetensors file.')


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    archive = np.load(path, allow_pickle=False)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(
        f'{path}: not a readable .npz (truncated or damaged? '
        f'{type(error).__name__}: {error}).') from None
  arrays = {}
  with archive:
    for key in archive.files:
      try:
        value = archive[key]
      except ValueError as error:  # numpy refuses object arrays (pickles).
        raise ValueError(
            f'{path}: array {key!r} is stored as a pickle ({error}); '
            'au_jax reads numeric arrays only: re-save the file with '
            'numpy.savez of numeric arrays.') from None
      except Exception as error:  # pylint: disable=broad-except
        raise ValueError(
            f'{path}: array {key!r} is unreadable (truncated or damaged? '
            f'{type(error).__name__}: {error}).') from None
      arrays[key] = (value.astype(np.float32)
                     if np.issubdtype(value.dtype, np.floating) else value)
  return arrays


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  with open(path, 'rb') as file:
    data = file.read()
  if len(data) < 8:
    raise ValueError(f'{path}: truncated: {len(data)} bytes, shorter than '
                     "a safetensors file's 8-byte header size.")
  (header_size,) = struct.unpack('<Q', data[:8])
  if header_size > len(data) - 8:
    raise ValueError(f'{path}: truncated or not a safetensors file: its '
                     f'header should hold {header_size} bytes, the file '
                     f'has {len(data)}.')
  try:
    header = json.loads(data[8:8 + header_size])
  except ValueError as error:
    raise ValueError(f'{path}: unreadable safetensors header '
                     f'({error}).') from None
  if not isinstance(header, dict):
    raise ValueError(f'{path}: the safetensors header is not a JSON object.')
  body = memoryview(data)[8 + header_size:]
  arrays = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    try:
      dtype, shape = info['dtype'], tuple(int(n) for n in info['shape'])
      start, end = (int(n) for n in info['data_offsets'])
    except (KeyError, TypeError, ValueError):
      raise ValueError(f'{path}: tensor {name!r} has a malformed header '
                       f'entry {info!r}.') from None
    if dtype == 'BF16':
      numpy_dtype = np.dtype(ml_dtypes.bfloat16)
    elif dtype in _FLOAT_DTYPES or dtype in _INT_DTYPES:
      numpy_dtype = np.dtype({**_FLOAT_DTYPES, **_INT_DTYPES}[dtype])
      numpy_dtype = numpy_dtype.newbyteorder('<')
    else:
      raise ValueError(
          f'{path}: tensor {name!r} has dtype {dtype!r}; supported: BF16, '
          f'{sorted(_FLOAT_DTYPES)} and {sorted(_INT_DTYPES)}.')
    if end > len(body):
      raise ValueError(
          f'{path}: truncated: tensor {name!r} ends at byte {end} of the '
          f'data section, which holds {len(body)} bytes.')
    if not 0 <= start <= end:
      raise ValueError(f'{path}: tensor {name!r} has data offsets '
                       f'[{start}, {end}).')
    if end - start != int(np.prod(shape)) * numpy_dtype.itemsize:
      raise ValueError(f'{path}: tensor {name!r} of shape {shape} does not '
                       f'match its {end - start} data bytes.')
    value = np.frombuffer(body[start:end], numpy_dtype).reshape(shape)
    native = (np.float32 if dtype in _FLOAT_DTYPES or dtype == 'BF16'
              else numpy_dtype.newbyteorder('='))
    arrays[name] = value.astype(native)
  return arrays


def read_pytorch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch state_dict file (.pth), as numpy arrays.

  Reads only through `torch.load(path, map_location='cpu',
  weights_only=True)`, PyTorch's restricted unpickler that builds tensors
  and plain containers and refuses anything else (no code runs). torch is
  an optional dependency, needed only here. A {'state_dict': {...}}
  wrapper is unwrapped.

  Raises:
    ModuleNotFoundError: torch is not installed (the message says how to
      convert elsewhere).
    ValueError: torch cannot read the file, or an entry is not a tensor;
      names the file (and entry).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Weights file not found: {path}')
  try:
    import torch  # pylint: disable=g-import-not-at-top  # Optional: torch.
  except ModuleNotFoundError:
    raise ModuleNotFoundError(
        f'{path}: reading a PyTorch checkpoint needs torch (pip install '
        'torch); or run `python -m au_jax.weights pth-to-npz` where torch '
        'is installed and use the .npz.') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(
        f'{path}: torch.load(weights_only=True) cannot read it '
        f'({type(error).__name__}: {str(error).splitlines()[0][:300]}).'
    ) from None
  if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
    state = state['state_dict']
  if not isinstance(state, dict):
    raise ValueError(f'{path}: holds a {type(state).__name__}, not a '
                     'state_dict of tensors.')
  arrays = {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(f'{path}: entry {key!r} is a {type(value).__name__}, '
                       'not a tensor.')
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.to(torch.float32)  # numpy has no bfloat16.
    arrays[str(key)] = value.numpy()
  return arrays


def read_any(path: str) -> dict[str, np.ndarray]:
  """read_arrays, or read_pytorch_checkpoint for a .pth/.pt file (the
  converters' input, where the release ships .pth)."""
  if path.endswith(('.pth', '.pt')):
    return read_pytorch_checkpoint(path)
  return read_arrays(path)


# ----------------------------------------------------------------------------
# Layouts and tensor conversions


def detect_layout(arrays: dict[str, np.ndarray], path: str = '') -> str:
  """'torchvision' (VGG or ResNet names) or 'caffe' (VGG)."""
  if 'features.0.weight' in arrays or 'conv1.weight' in arrays:
    return 'torchvision'
  if 'conv1_1.weight' in arrays:
    return 'caffe'
  raise ValueError(
      f'{path}: not a weights file in a known layout (expected '
      "'features.0.weight' (torchvision VGG), 'conv1.weight' (torchvision "
      f"ResNet) or 'conv1_1.weight' (caffe VGG); first keys: "
      f'{sorted(arrays)[:5]}).')


def is_resnet(arrays: dict[str, np.ndarray]) -> bool:
  return 'conv1.weight' in arrays and 'layer1.0.conv1.weight' in arrays


def conv_kernel(weight: np.ndarray) -> np.ndarray:
  """[O, I, kh, kw] (PyTorch, Caffe) -> [kh, kw, I, O] (flax)."""
  return np.ascontiguousarray(np.asarray(weight, np.float32)
                              .transpose(2, 3, 1, 0))


def chw_rows_to_hwc(kernel: np.ndarray, channels: int, height: int,
                    width: int) -> np.ndarray:
  """[C*H*W, N] dense rows in CHW flatten order -> [H*W*C, N] in HWC."""
  rows, units = kernel.shape
  if channels * height * width != rows:
    raise ValueError(f'a {rows}-input dense layer is not fed by a '
                     f'{channels}x{height}x{width} map.')
  return np.ascontiguousarray(
      kernel.reshape(channels, height, width, units).transpose(1, 2, 0, 3)
      .reshape(rows, units))


def _square_side(rows: int, channels: int, path: str) -> int:
  side = int(round(np.sqrt(rows // max(channels, 1))))
  if side * side * channels != rows:
    raise ValueError(f'{path}: fc6 has {rows} inputs: not a square map of '
                     f'{channels} channels.')
  return side


def torchvision_names(depth: int = 16) -> dict[str, str]:
  """au_jax VGG layer -> torchvision prefix ('conv1_1': 'features.0')."""
  names, index = {}, 0
  for block, count in enumerate(vgg.BLOCKS[depth]):
    for conv in range(count):
      names[f'conv{block + 1}_{conv + 1}'] = f'features.{index}'
      index += 2  # Conv2d, ReLU.
    index += 1  # MaxPool2d.
  names.update({'fc6': 'classifier.0', 'fc7': 'classifier.3',
                'fc8': 'classifier.6'})
  return names


def _vgg_source_names(layout: str, depth: int) -> dict[str, str]:
  if layout == 'torchvision':
    return torchvision_names(depth)
  return {name: name
          for name in vgg.conv_names(depth) + ['fc6', 'fc7', 'fc8']}


def vgg_params(arrays: dict[str, np.ndarray], path: str, layout: str,
               depth: int = 16) -> dict[str, Any]:
  """A VGG file as a vgg.Model 'params' tree (numpy): 'encoder' convs,
  'fc6', 'fc7' and 'output' (the file's fc8).

  Raises:
    ValueError: a missing or unexpected key (e.g. a batch-norm VGG or
      another depth), naming the file and keys.
  """
  names = _vgg_source_names(layout, depth)
  expected = {f'{prefix}.{kind}' for prefix in names.values()
              for kind in ('weight', 'bias')}
  missing = sorted(expected - set(arrays))
  unexpected = sorted(set(arrays) - expected)
  if missing or unexpected:
    raise ValueError(
        f'{path}: not a VGG-{depth} in the {layout} layout: missing '
        f'{missing[:6]}, unexpected {unexpected[:6]} (a batch-norm VGG or '
        'another depth?).')

  def tensor(name, kind):
    return np.asarray(arrays[f'{names[name]}.{kind}'], np.float32)

  encoder = {}
  for name in vgg.conv_names(depth):
    kernel = conv_kernel(tensor(name, 'weight'))
    if name == 'conv1_1' and layout == 'caffe':
      kernel = np.ascontiguousarray(kernel[:, :, ::-1, :])  # BGR -> RGB.
    encoder[name] = {'kernel': kernel, 'bias': tensor(name, 'bias')}
  channels = tensor(vgg.conv_names(depth)[-1], 'weight').shape[0]
  fc6 = tensor('fc6', 'weight').T
  side = _square_side(fc6.shape[0], channels, path)
  params = {'encoder': encoder,
            'fc6': {'kernel': chw_rows_to_hwc(fc6, channels, side, side),
                    'bias': tensor('fc6', 'bias')}}
  for name, target in (('fc7', 'fc7'), ('fc8', 'output')):
    params[target] = {'kernel': np.ascontiguousarray(tensor(name, 'weight').T),
                      'bias': tensor(name, 'bias')}
  return params


def flat_tree(tree: PyTree, prefix: str = '') -> dict[str, Any]:
  """{'a/b/kernel': leaf} of nested mappings, in their order (so errors
  name a layer's kernel before its bias)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flat_tree(value, f'{prefix}{key}/'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def place_tensors(path: str, target: PyTree, source: dict[str, Any],
           origins: dict[str, str] | None = None) -> PyTree:
  """`target` with the leaves of the flat `source` ({'a/b/kernel': array})
  put in; every source leaf must exist in `target` with the same shape.

  origins: flat name -> the file's tensor name, for error messages.
  """
  origins = origins or {}
  target_flat = flat_tree(target)
  for name, value in source.items():
    where = f'{origins[name]} gives ' if name in origins else ''
    if name not in target_flat:
      raise ValueError(f'{path}: {where}{name}, which is not a parameter of '
                       'this model.')
    wanted = tuple(np.shape(target_flat[name]))
    if tuple(np.shape(value)) != wanted:
      raise ValueError(
          f'{path}: {where}{name} of shape {tuple(np.shape(value))}; the '
          f'model has {wanted} (another width, depth or input size?).')

  def replace(key_path, leaf):
    name = '/'.join(str(getattr(key, 'key', key)) for key in key_path)
    return source.get(name, leaf)
  return jax.tree_util.tree_map_with_path(replace, target)


def load_vgg(path: str, params: PyTree, depth: int = 16,
             layout: str = 'auto', include_output: bool = False) -> PyTree:
  """Returns vgg.Model `params` with the VGG layers replaced by the file's.

  Args:
    path: .npz or .safetensors file (module docstring for the layouts).
    params: a vgg.Model 'params' tree (or its shapes) to fill: 'encoder'
      convs, 'fc6' and 'fc7' are replaced; 'output' too when
      `include_output` (the 1000-class ImageNet classifier, e.g. to check a
      conversion); EmoNet keeps its own 8-way output.
    depth: 16 or 19.
    layout: 'auto', 'torchvision' or 'caffe'.
    include_output: also load fc8 into 'output'.

  Raises:
    ValueError: unknown layout, a missing or unexpected key, or a shape
      that does not match the model (e.g. a narrow `width_multiplier`);
      each message names the file and tensor.
  """
  arrays = read_arrays(path)
  if layout == 'auto':
    layout = detect_layout(arrays, path)
  elif layout not in LAYOUTS:
    raise ValueError(f"layout {layout!r}: expected 'auto' or one of {LAYOUTS}.")
  source = flat_tree(vgg_params(arrays, path, layout, depth))
  if not include_output:
    source = {k: v for k, v in source.items() if not k.startswith('output/')}
  return place_tensors(path, params, source, _vgg_origins(source, layout, depth))


def _vgg_origins(flat: dict[str, Any], layout: str,
                 depth: int) -> dict[str, str]:
  """au_jax leaf name -> the file's tensor, by the layer's last name
  ('head_0/fc6/kernel' and 'fc6/kernel' -> 'classifier.0.weight')."""
  names = _vgg_source_names(layout, depth)
  names['output'] = names.pop('fc8')
  origins = {}
  for name in flat:
    layer, kind = name.rsplit('/', 1)
    prefix = names[layer.split('/')[-1].removeprefix('motion_')]
    origins[name] = f"{prefix}.{'weight' if kind == 'kernel' else 'bias'}"
  return origins


# ----------------------------------------------------------------------------
# ResNet


def resnet_torchvision_name(module: str) -> str:
  """au_jax ResNet module path -> torchvision prefix.

  'conv1' -> 'conv1'; 'layer2_0/bn1' -> 'layer2.0.bn1';
  'layer2_0/downsample_conv' -> 'layer2.0.downsample.0';
  'layer2_0/downsample_bn' -> 'layer2.0.downsample.1'.
  """
  parts = module.split('/')
  if len(parts) == 1:
    return parts[0]
  block, layer = parts
  stage, index = block.split('_')
  layer = {'downsample_conv': 'downsample.0',
           'downsample_bn': 'downsample.1'}.get(layer, layer)
  return f'{stage}.{index}.{layer}'


def load_resnet(arrays: dict[str, np.ndarray], path: str, params: PyTree,
                batch_stats: PyTree) -> tuple[PyTree, PyTree, list[str]]:
  """A torchvision ResNet state_dict into a resnet.ResNet's variables.

  Args:
    arrays: the file's tensors (torchvision names).
    path: the file, for messages.
    params, batch_stats: the ResNet module's trees (or their shapes).

  Returns:
    (params, batch_stats, loaded au_jax names). `fc.*` (the ImageNet
    classifier) and `*.num_batches_tracked` are not used.

  Raises:
    ValueError: a tensor the model needs is missing, the file has tensors
      this depth does not (another depth), or a shape differs (another
      width); names the file and tensors.
  """
  flat_params = flat_tree(params)
  modules = sorted({name.rsplit('/', 1)[0] for name in flat_params})
  source_params, source_stats, origins = {}, {}, {}
  expected = set()
  for module in modules:
    prefix = resnet_torchvision_name(module)
    if f'{module}/kernel' in flat_params:
      expected.add(f'{prefix}.weight')
      if f'{prefix}.weight' in arrays:
        source_params[f'{module}/kernel'] = conv_kernel(
            arrays[f'{prefix}.weight'])
        origins[f'{module}/kernel'] = f'{prefix}.weight'
      continue
    for group, ours, theirs in (
        (source_params, 'scale', 'weight'), (source_params, 'bias', 'bias'),
        (source_stats, 'mean', 'running_mean'),
        (source_stats, 'var', 'running_var')):
      key = f'{prefix}.{theirs}'
      expected.add(key)
      if key in arrays:
        group[f'{module}/{ours}'] = np.asarray(arrays[key], np.float32)
        origins[f'{module}/{ours}'] = key
  missing = sorted(expected - set(arrays))
  unexpected = sorted(
      key for key in set(arrays) - expected
      if not key.startswith('fc.') and not key.endswith('num_batches_tracked'))
  if missing or unexpected:
    raise ValueError(
        f'{path}: not the torchvision ResNet this model needs: missing '
        f'{missing[:6]}{" ..." if len(missing) > 6 else ""}, unexpected '
        f'{unexpected[:6]}{" ..." if len(unexpected) > 6 else ""} (another '
        'depth?).')
  params = place_tensors(path, params, source_params, origins)
  batch_stats = place_tensors(path, batch_stats, source_stats, origins)
  return params, batch_stats, sorted(source_params) + sorted(source_stats)


# ----------------------------------------------------------------------------
# Starting weights of a run


def _resnet_scope(params: PyTree) -> str | None:
  """The top-level name of the model's ResNet trunk ('stem' in resnet.Model
  and lpnet.Model), or None."""
  scopes = [name for name, tree in params.items()
            if isinstance(tree, Mapping) and 'conv1' in tree
            and 'layer1_0' in tree]
  return scopes[0] if len(scopes) == 1 else None


def initial_variables(config: ml_collections.ConfigDict,
                      variables: dict[str, PyTree]
                      ) -> tuple[dict[str, PyTree], dict[str, Any]]:
  """`variables` ({'params', 'batch_stats'}) with `config.imagenet_weights`
  loaded (the trainer calls this when a run has no checkpoint of its own
  and no init_from).

  ResNet files (torchvision names) fill the model's ResNet trunk: 'stem'
  of resnet.Model and lpnet.Model (LP-Net's ResNet-34 stem), batch-norm
  running statistics included. VGG files (torchvision or Caffe names) fill
  the encoder convs and fc6/fc7 of vgg.Model (EmoNet); models with
  `adapt_params` map that VGG onto their own layout as init_from does
  (CAUD: every head gets fc6/fc7; AUNets: the motion stream, widened
  conv1_1 or fc6 as the fusion needs). The output layer always keeps its
  own initialisation (the thesis replaces ImageNet's 1000 classes, sec.
  4.1); fc8 / fc are reported unused. `config.model.depth` picks VGG-16/19.

  Returns:
    (new variables, report {'source', 'layout', 'architecture',
    'loaded': [au_jax names], 'unused_source': [file names]}).

  Raises:
    ValueError: a file that does not fit the model (missing, unexpected or
      differently shaped tensors; a ResNet file for a VGG model or the
      reverse); each message names the file.
    FileNotFoundError: the file is missing.
  """
  path = os.path.expanduser(config.imagenet_weights)
  arrays = read_arrays(path)
  layout = detect_layout(arrays, path)
  params = variables['params']
  batch_stats = variables.get('batch_stats') or {}
  report = {'source': os.path.abspath(path), 'layout': layout}
  if is_resnet(arrays):
    scope = _resnet_scope(params)
    if scope is None:
      raise ValueError(
          f'{path} holds a ResNet, but model {config.model_name!r} has no '
          "ResNet trunk (a 'stem' with conv1 and layer1_0) to load it into.")
    stem, stats, loaded = load_resnet(arrays, path, params[scope],
                                      batch_stats.get(scope, {}))
    params = dict(params, **{scope: stem})
    batch_stats = dict(batch_stats, **{scope: stats})
    used = {resnet_torchvision_name(name.rsplit('/', 1)[0]) for name in loaded}
    report.update(
        architecture='resnet',
        loaded=[f'{scope}/{name}' for name in loaded],
        unused_source=sorted(key for key in arrays
                             if key.rsplit('.', 1)[0] not in used))
    return {'params': params, 'batch_stats': batch_stats}, report
  if 'encoder' not in params:
    raise ValueError(
        f'{path} holds a VGG, but model {config.model_name!r} has no VGG '
        "'encoder' to load it into.")
  depth = int(config.model.get('depth', 16))
  source = vgg_params(arrays, path, layout, depth)
  del source['output']  # The model's own output layer (docstring).
  module = importlib.import_module(f'au_jax.models.{config.model_name}')
  if hasattr(module, 'adapt_params'):
    try:
      source = module.adapt_params(models.create(config), source, params)
    except ValueError as error:
      raise ValueError(f'{path}: {error}') from None
  loaded = flat_tree(source)
  params = place_tensors(path, params, loaded, _vgg_origins(loaded, layout, depth))
  fc8 = _vgg_source_names(layout, depth)['fc8']
  report.update(architecture=f'vgg{depth}',
                loaded=sorted({name.rsplit('/', 1)[0] for name in loaded}),
                unused_source=[f'{fc8}.weight', f'{fc8}.bias'])
  return {'params': params, 'batch_stats': batch_stats}, report


# ----------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m au_jax.weights pth-to-npz --input=X.pth --output=X.npz`."""
  parser = argparse.ArgumentParser(prog='python -m au_jax.weights')
  commands = parser.add_subparsers(dest='command', required=True)
  to_npz = commands.add_parser(
      'pth-to-npz', help='a PyTorch state_dict (.pth) -> .npz (needs torch)')
  to_npz.add_argument('--input', required=True)
  to_npz.add_argument('--output', required=True)
  args = parser.parse_args(argv)
  try:
    np.savez(args.output, **read_pytorch_checkpoint(args.input))
    print(f'Wrote {args.output}')
  except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
    print(f'au_jax.weights: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
