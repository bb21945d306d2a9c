"""Foreign starting weights: torchvision ResNets and VGGs, Caffe VGGs, and
the AUNets release, read from plain array files, never from a pickle.

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

The AUNets release (BCV-Uniandes/AUNets: one VGG-16 per BP4D AU and fusion
variant, PyTorch state_dicts) becomes an au_jax run directory that
`au_jax.predict` loads (`convert_aunets_release`):

  python -m au_jax.weights convert-aunets --input=AU12.pth --au=12 \
      --variant=rgb --output=runs/aunets_release/au_12
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
import jax.numpy as jnp
import ml_collections
import ml_dtypes
import numpy as np

from au_jax import aus as aus_lib
from au_jax import checkpointing
from au_jax import models
from au_jax import runs
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


def _flat(tree: PyTree, prefix: str = '') -> dict[str, Any]:
  """{'a/b/kernel': leaf} of nested mappings, in their order (so errors
  name a layer's kernel before its bias)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flat(value, f'{prefix}{key}/'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _place(path: str, target: PyTree, source: dict[str, Any],
           origins: dict[str, str] | None = None) -> PyTree:
  """`target` with the leaves of the flat `source` ({'a/b/kernel': array})
  put in; every source leaf must exist in `target` with the same shape.

  origins: flat name -> the file's tensor name, for error messages.
  """
  origins = origins or {}
  target_flat = _flat(target)
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
  source = _flat(vgg_params(arrays, path, layout, depth))
  if not include_output:
    source = {k: v for k, v in source.items() if not k.startswith('output/')}
  return _place(path, params, source, _vgg_origins(source, layout, depth))


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
  flat_params = _flat(params)
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
  params = _place(path, params, source_params, origins)
  batch_stats = _place(path, batch_stats, source_stats, origins)
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
  loaded = _flat(source)
  params = _place(path, params, loaded, _vgg_origins(loaded, layout, depth))
  fc8 = _vgg_source_names(layout, depth)['fc8']
  report.update(architecture=f'vgg{depth}',
                loaded=sorted({name.rsplit('/', 1)[0] for name in loaded}),
                unused_source=[f'{fc8}.weight', f'{fc8}.bias'])
  return {'params': params, 'batch_stats': batch_stats}, report


# ----------------------------------------------------------------------------
# The AUNets release


# au_jax fusion -> the release's OF_option (models/vgg_pytorch.py).
RELEASE_VARIANTS = {'rgb': 'None', 'flow': 'Alone', 'channels': 'Channels',
                    'horizontal': 'Horizontal', 'pi_conv': 'Conv',
                    'pi_fc6': 'FC6', 'pi_fc7': 'FC7'}
# The release's input: ToTensor() (RGB in [0, 1]) then Normalize with this
# mean and std 1 (its data_loader.py, imagenet=False); flow images too.
RELEASE_PIXEL_MEAN = (0.485, 0.456, 0.406)
RELEASE_PIXEL_STD = (1.0, 1.0, 1.0)
RELEASE_DATA_VERSION = 'aunets-release:bp4d'


def release_fusion(variant: str) -> str:
  """An au_jax fusion name from au_jax's or the release's name ('Conv')."""
  by_release = {v.lower(): k for k, v in RELEASE_VARIANTS.items()}
  fusion = variant if variant in RELEASE_VARIANTS else by_release.get(
      variant.lower())
  if fusion is None:
    raise ValueError(
        f'AUNets release variant {variant!r}: expected one of '
        f'{sorted(RELEASE_VARIANTS)} (or the release names '
        f'{sorted(RELEASE_VARIANTS.values())}); the release\'s Vertical '
        'has no au_jax fusion.')
  return fusion


def release_layers(fusion: str) -> list[tuple[str, str, str]]:
  """(au_jax layer, release prefix, kind) of one release variant.

  kind: 'conv', 'pool5' (a dense layer fed by the flattened pool5 map),
  'dense' or 'output' (the one-logit classifier). In pi_fc7 the motion
  stream's fc6/fc7 come from `classifier_rgb`: the release's forward pass
  sends both streams through it (`classifier_of` is built, never used), so
  that is the function the checkpoint computes.
  """
  two_stream = fusion.startswith('pi_')
  layers = []
  for name, prefix in torchvision_names(16).items():
    if not name.startswith('conv'):
      continue
    index = prefix.split('.')[1]
    if two_stream:
      layers.append((f'encoder/{name}', f'features_rgb.{index}', 'conv'))
      layers.append((f'motion_encoder/{name}', f'features_of.{index}',
                     'conv'))
    else:
      layers.append((f'encoder/{name}', f'features.{index}', 'conv'))
  if fusion == 'pi_fc6':
    return layers + [('fc6', 'classifier_rgb.0', 'pool5'),
                     ('motion_fc6', 'classifier_of.0', 'pool5'),
                     ('fc7', 'classifier.0', 'dense'),
                     ('output', 'classifier.3', 'output')]
  if fusion == 'pi_fc7':
    return layers + [('fc6', 'classifier_rgb.0', 'pool5'),
                     ('fc7', 'classifier_rgb.3', 'dense'),
                     ('motion_fc6', 'classifier_rgb.0', 'pool5'),
                     ('motion_fc7', 'classifier_rgb.3', 'dense'),
                     ('output', 'classifier.0', 'output')]
  return layers + [('fc6', 'classifier.0', 'pool5'),
                   ('fc7', 'classifier.3', 'dense'),
                   ('output', 'classifier.6', 'output')]


def _abstract_params(config: ml_collections.ConfigDict) -> PyTree:
  size = int(config.crop_size)
  image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  batch = {'image': image, 'flow': image}
  model = models.create(config)
  return jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False), batch)['params']


def release_params(arrays: dict[str, np.ndarray], path: str,
                   config: ml_collections.ConfigDict
                   ) -> tuple[dict[str, Any], list[str]]:
  """An AUNets release state_dict as the params of config's aunets.Model.

  Mapping (module docstring for the general conversions):
    * a leading 'model.' (the release's Classifier wrapper) or 'module.'
      (DataParallel) is dropped from every key;
    * layers by `release_layers(config.model.fusion)`; pool5-fed dense rows
      permuted CHW -> HWC for the map they read (7x7x512; 7x14x512 side by
      side in horizontal; 7x7x1024, RGB channels first, in pi_conv);
    * the release's ONE logit z (BCEWithLogitsLoss: p = sigmoid(z)) into
      au_jax's 2-way output (config.model.two_way_output): the 'absent'
      column and bias are zero and the 'present' column is the release's
      row, so au_jax's logit z_present - z_absent is z exactly and
      p = sigmoid(z) as in the release. A 2-row (2-way softmax) classifier
      maps row by row; a one-unit au_jax output takes the row as is;
    * input scaling: the release feeds (x - mean) with std 1
      (RELEASE_PIXEL_*), au_jax (x - mean) / config.pixel_std. conv1_1's
      input channels are multiplied by config.pixel_std (both streams; both
      halves in 'channels'), so conv1_1 sees the same values; zero padding
      stays zero in both. config.pixel_mean must equal the release's.

  Returns:
    (params, the file's keys left unused).

  Raises:
    ValueError: missing, unexpected or differently shaped tensors (naming
      the file, tensor and the variant the keys look like), or another
      pixel mean.
  """
  fusion = config.model.fusion
  stripped = ''
  while prefix := next((p for p in ('model.', 'module.') if arrays and all(
      key.startswith(p) for key in arrays)), None):
    arrays = {key[len(prefix):]: value for key, value in arrays.items()}
    stripped += prefix
  if not np.allclose(config.pixel_mean, RELEASE_PIXEL_MEAN, atol=1e-6):
    raise ValueError(
        f'config.pixel_mean={tuple(config.pixel_mean)}: the AUNets release '
        f'was trained on inputs minus {RELEASE_PIXEL_MEAN}; only the std '
        'can be folded into conv1_1.')
  layers = release_layers(fusion)
  expected = {f'{prefix}.{kind}' for _, prefix, _ in layers
              for kind in ('weight', 'bias')}
  unused = sorted(set(arrays) - expected)
  allowed_unused = [key for key in unused
                    if fusion == 'pi_fc7' and key.startswith('classifier_of.')]
  missing = sorted(expected - set(arrays))
  unexpected = sorted(set(unused) - set(allowed_unused))
  if missing or unexpected:
    raise ValueError(
        f'{path}: not an AUNets release checkpoint of variant {fusion!r} '
        f'({RELEASE_VARIANTS[fusion]}): missing {missing[:5]}, unexpected '
        f'{unexpected[:5]}; its keys look like variant '
        f'{_guess_release_variant(arrays)!r}.')
  abstract = _abstract_params(config)  # Shapes only.
  target = _flat(abstract)
  scale = np.asarray(config.pixel_std, np.float32) / np.asarray(
      RELEASE_PIXEL_STD, np.float32)
  source, origins = {}, {}
  for layer, prefix, kind in layers:
    weight = np.asarray(arrays[f'{prefix}.weight'], np.float32)
    bias = np.asarray(arrays[f'{prefix}.bias'], np.float32)
    if kind == 'conv':
      kernel = conv_kernel(weight)
      if layer.endswith('conv1_1'):
        repeats = kernel.shape[2] // scale.size
        kernel = kernel * np.tile(scale, max(repeats, 1))[None, None, :, None]
    elif kind == 'output':
      kernel, bias = _output_layer(weight, bias, target, path, prefix)
    else:
      kernel = np.ascontiguousarray(weight.T)
      if kind == 'pool5':
        kernel = _pool5_rows(kernel, arrays, fusion, path, prefix)
    for name, value, part in (('kernel', kernel, 'weight'),
                              ('bias', bias, 'bias')):
      source[f'{layer}/{name}'] = value
      origins[f'{layer}/{name}'] = f'{prefix}.{part}'
  missing_here = sorted(set(target) - set(source))
  if missing_here:
    raise ValueError(f'{path}: the model has {missing_here[:5]}, which the '
                     f'release variant {fusion!r} does not fill.')
  # Every leaf is replaced: the shapes tree becomes the params.
  return (_place(path, abstract, source, origins),
          [stripped + key for key in unused])


def _pool5_rows(kernel: np.ndarray, arrays: dict[str, np.ndarray],
                fusion: str, path: str, prefix: str) -> np.ndarray:
  """A pool5-fed dense kernel [C*H*W, N] -> HWC rows (release_params)."""
  conv5 = 'features.28.weight' if 'features.28.weight' in arrays else (
      'features_rgb.28.weight')
  channels = arrays[conv5].shape[0] * (2 if fusion == 'pi_conv' else 1)
  aspect = 2 if fusion == 'horizontal' else 1
  cells = kernel.shape[0] // channels
  height = int(round(np.sqrt(cells / aspect)))
  if height * height * aspect * channels != kernel.shape[0]:
    raise ValueError(f'{path}: {prefix}.weight has {kernel.shape[0]} '
                     f'inputs: not a pool5 map of {channels} channels for '
                     f'variant {fusion!r}.')
  return chw_rows_to_hwc(kernel, channels, height, height * aspect)


def _output_layer(weight: np.ndarray, bias: np.ndarray,
                  target: dict[str, Any], path: str,
                  prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """The release classifier [K, F] as au_jax's output (release_params)."""
  units = tuple(target['output/kernel'].shape)[1]
  if weight.shape[0] == units:
    return np.ascontiguousarray(weight.T), bias
  if weight.shape[0] == 1 and units == 2:
    kernel = np.zeros((weight.shape[1], 2), np.float32)
    kernel[:, 1] = weight[0]
    return kernel, np.array([0.0, bias[0]], np.float32)
  raise ValueError(f'{path}: {prefix}.weight has {weight.shape[0]} outputs; '
                   f'the model has {units} (one AU per converted model).')


def _guess_release_variant(arrays: dict[str, np.ndarray]) -> str:
  """The variant a release state_dict's keys and shapes suggest."""
  if 'features_rgb.0.weight' in arrays:
    if 'classifier_rgb.3.weight' in arrays:
      return 'pi_fc7'
    return 'pi_fc6' if 'classifier_rgb.0.weight' in arrays else 'pi_conv'
  if 'features.0.weight' not in arrays:
    return 'none of them'
  if arrays['features.0.weight'].shape[1] == 6:
    return 'channels'
  fc6 = arrays.get('classifier.0.weight')
  conv5 = arrays.get('features.28.weight')
  if fc6 is not None and conv5 is not None:
    cells = fc6.shape[1] // max(conv5.shape[0], 1)
    side = int(round(np.sqrt(cells)))
    if side * side != cells:
      return 'horizontal'
  return 'rgb or flow'


def aunets_release_config(config_file: str,
                          fusion: str) -> ml_collections.ConfigDict:
  """`<config_file>:paper-<fusion>` (configs/aunets.py), loaded as
  au_jax.main loads a config file."""
  if not os.path.isfile(config_file):
    raise FileNotFoundError(
        f'{config_file} not found: run from the au_jax checkout or pass '
        '--config=<path to configs/aunets.py>.')
  spec = importlib.util.spec_from_file_location('_aunets_config',
                                                config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(f'paper-{fusion}')


def convert_aunets_release(source: str, au: int, variant: str,
                           output_dir: str,
                           config: ml_collections.ConfigDict | None = None,
                           fold: int | None = None,
                           config_file: str = 'configs/aunets.py') -> str:
  """Writes an au_jax run directory holding one released AUNet.

  The directory is a finished weights-only run (checkpointing: config.json,
  best_weights/) that `au_jax.predict` loads, plus converted_from.json
  (the source file, its variant and the mapping notes). The config is
  configs/aunets.py:paper-<fusion> with aus=(au,) (run fields as a trained
  per-AU run has them); its decision threshold is config.threshold (0.5:
  the release tuned one on validation data that is not in the file).

  Args:
    source: the release's .pth (read by torch.load(weights_only=True);
      torch needed) or the same tensors as .npz / .safetensors.
    au: the BP4D AU the model detects.
    variant: au_jax fusion name or the release's OF_option name.
    output_dir: the run directory to create (must not hold a run).
    config: the base config instead of `config_file`'s (tests use a
      narrow one); its model.fusion must be the variant's.
    fold: the BP4D fold the model was trained on, if known (run metadata).
    config_file: configs/aunets.py.

  Raises:
    ValueError: unknown variant or AU, an existing run in output_dir, or
      a file that does not fit (release_params).
  """
  fusion = release_fusion(variant)
  if int(au) not in aus_lib.BP4D_AUS:
    raise ValueError(f'--au={au}: the release has one model per BP4D AU '
                     f'{aus_lib.BP4D_AUS}.')
  if config is None:
    config = aunets_release_config(config_file, fusion)
  if config.model.fusion != fusion:
    raise ValueError(f'config.model.fusion={config.model.fusion!r} but the '
                     f'variant is {fusion!r}.')
  output_dir = os.path.abspath(os.path.expanduser(output_dir))
  if os.path.exists(os.path.join(output_dir, 'config.json')):
    raise ValueError(f'{output_dir} already holds a run; choose another '
                     '--output or delete it.')
  config = runs.run_config(config, runs.RunKey(
      fold=runs.ALL if fold is None else int(fold), au=int(au)))
  params, unused = release_params(read_any(source), source, config)
  os.makedirs(output_dir, exist_ok=True)
  checkpointing.write_config(config, output_dir)
  checkpointing.save_weights_only(
      output_dir, {'params': params, 'batch_stats': {}}, 0,
      checkpointing.fingerprint(config, RELEASE_DATA_VERSION),
      config.num_train_steps)
  with open(os.path.join(output_dir, 'converted_from.json'), 'w') as f:
    json.dump({
        'source': os.path.abspath(source), 'au': int(au), 'fusion': fusion,
        'release_variant': RELEASE_VARIANTS[fusion],
        'unused_source': unused,
        'notes': [
            'one release logit z -> 2-way output (absent 0, present z): '
            'au_jax logit = z, probability sigmoid(z)',
            'conv1_1 input channels x config.pixel_std: the release feeds '
            f'x - {RELEASE_PIXEL_MEAN} with std 1',
            'the release resizes the face crop to 224 (no centre crop); '
            'au_jax uses config.resize_size / crop_size'] + (
                ['pi_fc7: motion fc6/fc7 from classifier_rgb, as the '
                 "release's forward pass"] if fusion == 'pi_fc7' else [])},
              f, indent=1)
  return output_dir


# ----------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m au_jax.weights convert-aunets|pth-to-npz ...`."""
  parser = argparse.ArgumentParser(prog='python -m au_jax.weights')
  commands = parser.add_subparsers(dest='command', required=True)
  release = commands.add_parser(
      'convert-aunets', help='an AUNets release checkpoint -> a run dir')
  release.add_argument('--input', required=True,
                       help='AU<nn>.pth (.npz / .safetensors)')
  release.add_argument('--au', type=int, required=True)
  release.add_argument('--variant', default='rgb',
                       help=f'one of {sorted(RELEASE_VARIANTS)}')
  release.add_argument('--output', required=True, help='run directory')
  release.add_argument('--fold', type=int, default=None)
  release.add_argument('--config', default='configs/aunets.py')
  to_npz = commands.add_parser(
      'pth-to-npz', help='a PyTorch state_dict (.pth) -> .npz (needs torch)')
  to_npz.add_argument('--input', required=True)
  to_npz.add_argument('--output', required=True)
  args = parser.parse_args(argv)
  try:
    if args.command == 'convert-aunets':
      directory = convert_aunets_release(
          args.input, args.au, args.variant, args.output, fold=args.fold,
          config_file=args.config)
      print(f'Wrote {directory}: python -m au_jax.predict '
            f'--checkpoint={directory} --input=<video or images>')
    else:
      np.savez(args.output, **read_pytorch_checkpoint(args.input))
      print(f'Wrote {args.output}')
  except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
    print(f'au_jax.weights: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
