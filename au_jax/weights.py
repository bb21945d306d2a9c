"""ImageNet VGG weights from a .npz or .safetensors file, never a pickle.

EmoNet starts from an ImageNet VGG-16 (caud_thesis.txt sec. 4.1; aunets_2017
sec. 3.1). Checkpoints of other frameworks are often pickles (PyTorch .pth),
which can run code when read; au_jax reads only plain array files:
`np.load(path, allow_pickle=False)` for .npz, and a small reader of the
safetensors format (8-byte little-endian header size, a JSON header of
{name: {dtype, shape, data_offsets}}, raw little-endian data) for
.safetensors, so no extra dependency is needed.

Two key layouts are recognised (`layout='auto'` picks by key names):

  'torchvision'  torchvision.models.vgg16/vgg19 state_dict names:
                 features.<i>.weight [O, I, 3, 3], features.<i>.bias [O] for
                 the convs (i counts conv, ReLU and pool modules: VGG-16 uses
                 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                 classifier.{0,3,6}.weight [out, in] / .bias for fc6, fc7,
                 fc8. Inputs: RGB in [0, 1] normalised with mean (0.485,
                 0.456, 0.406) and std (0.229, 0.224, 0.225): set
                 config.pixel_mean / pixel_std to these.
  'caffe'        the VGG authors' Caffe layer names: conv1_1.weight ...
                 conv5_3.weight [O, I, 3, 3], fc6.weight, fc7.weight,
                 fc8.weight [out, in], each with .bias. Caffe VGG reads BGR
                 in [0, 255] minus the mean (103.939, 116.779, 123.68); the
                 loader reverses conv1_1's input channels so au_jax feeds RGB:
                 set pixel_mean = (123.68, 116.779, 103.939) / 255 and
                 pixel_std = (1/255,) * 3.

Making such a file from torchvision (run where torch is installed; the .pth
download is a pickle that only torch.load should open):

  import numpy as np, torchvision
  net = torchvision.models.vgg16(weights='IMAGENET1K_V1')
  np.savez('vgg16_imagenet.npz',
           **{k: v.numpy() for k, v in net.state_dict().items()})

Conversions: conv kernels OIHW -> HWIO; dense kernels [out, in] -> [in, out];
fc6's rows are permuted from the CHW flatten order of Caffe and PyTorch to
flax's HWC order, so the loaded network computes the same function
(tests/test_vgg.py compares against a PyTorch forward pass).
"""

import json
import os
import struct
from typing import Any

import numpy as np

from au_jax.models import vgg
import ml_dtypes

PyTree = Any
LAYOUTS = ('torchvision', 'caffe')

_SAFETENSORS_DTYPES = {'F64': np.float64, 'F32': np.float32,
                       'F16': np.float16}


def read_arrays(path: str) -> dict[str, np.ndarray]:
  """All arrays of a .npz or .safetensors file, without unpickling.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: another extension, a malformed safetensors header, or an
      unsupported dtype (names the file and tensor).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Weights file not found: {path}')
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as archive:
      return {key: archive[key] for key in archive.files}
  if path.endswith('.safetensors'):
    return _read_safetensors(path)
  raise ValueError(f'{path}: weights must be a .npz or .safetensors file '
                   '(pickled checkpoints such as .pth are not read).')


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  with open(path, 'rb') as file:
    data = file.read()
  if len(data) < 8:
    raise ValueError(f'{path}: too short for a safetensors file.')
  (header_size,) = struct.unpack('<Q', data[:8])
  if header_size > len(data) - 8:
    raise ValueError(f'{path}: safetensors header size {header_size} exceeds '
                     f'the file ({len(data)} bytes).')
  try:
    header = json.loads(data[8:8 + header_size])
  except ValueError as error:
    raise ValueError(f'{path}: unreadable safetensors header ({error}).')
  body = memoryview(data)[8 + header_size:]
  arrays = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    dtype = info.get('dtype')
    if dtype == 'BF16':
      numpy_dtype = np.dtype(ml_dtypes.bfloat16)
    elif dtype in _SAFETENSORS_DTYPES:
      numpy_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype]).newbyteorder('<')
    else:
      raise ValueError(f'{path}: tensor {name!r} has dtype {dtype!r}; '
                       f'supported: {sorted(_SAFETENSORS_DTYPES)} and BF16.')
    start, end = info['data_offsets']
    shape = tuple(info['shape'])
    if end - start != int(np.prod(shape)) * numpy_dtype.itemsize:
      raise ValueError(f'{path}: tensor {name!r} of shape {shape} does not '
                       f'match its {end - start} data bytes.')
    arrays[name] = np.frombuffer(body[start:end], numpy_dtype).reshape(
        shape).astype(np.float32)
  return arrays


def torchvision_names(depth: int = 16) -> dict[str, str]:
  """au_jax layer name -> torchvision prefix ('conv1_1': 'features.0')."""
  names, index = {}, 0
  for block, count in enumerate(vgg.BLOCKS[depth]):
    for conv in range(count):
      names[f'conv{block + 1}_{conv + 1}'] = f'features.{index}'
      index += 2  # Conv2d, ReLU.
    index += 1  # MaxPool2d.
  names.update({'fc6': 'classifier.0', 'fc7': 'classifier.3',
                'fc8': 'classifier.6'})
  return names


def _source_names(layout: str, depth: int) -> dict[str, str]:
  if layout == 'torchvision':
    return torchvision_names(depth)
  return {name: name
          for name in vgg.conv_names(depth) + ['fc6', 'fc7', 'fc8']}


def detect_layout(arrays: dict[str, np.ndarray], path: str = '') -> str:
  if 'features.0.weight' in arrays:
    return 'torchvision'
  if 'conv1_1.weight' in arrays:
    return 'caffe'
  raise ValueError(
      f'{path}: not a VGG weights file in a known layout (expected '
      f"'features.0.weight' (torchvision) or 'conv1_1.weight' (caffe); "
      f'first keys: {sorted(arrays)[:5]}).')


def _fc6_rows_to_hwc(kernel: np.ndarray, channels: int) -> np.ndarray:
  """[C*H*W, N] rows in CHW order -> [H*W*C, N] rows in HWC order."""
  rows, units = kernel.shape
  side = int(round(np.sqrt(rows // channels)))
  if side * side * channels != rows:
    raise ValueError(f'fc6 has {rows} inputs: not a square map of '
                     f'{channels} channels.')
  return (kernel.reshape(channels, side, side, units)
          .transpose(1, 2, 0, 3).reshape(rows, units))


def load_vgg(path: str, params: PyTree, depth: int = 16,
             layout: str = 'auto', include_output: bool = False) -> PyTree:
  """Returns `params` with the VGG layers replaced by the file's weights.

  Args:
    path: .npz or .safetensors file (module docstring for the layouts).
    params: a vgg.Model (or AUNets 'rgb') 'params' tree to fill: its
      'encoder' convs, 'fc6' and 'fc7' are replaced; 'output' too when
      `include_output` (the 1000-class ImageNet classifier, e.g. to check a
      conversion); EmoNet keeps its own 8-way output.
    depth: 16 or 19.
    layout: 'auto', 'torchvision' or 'caffe'.
    include_output: also load fc8 into 'output'.

  Returns:
    A new params tree (numpy leaves for the loaded layers).

  Raises:
    ValueError: unknown layout, a missing or unexpected key (e.g. a
      batch-norm VGG), or a shape that does not match the model (e.g. a
      narrow `width_multiplier`); each message names the file and key.
  """
  arrays = read_arrays(path)
  if layout == 'auto':
    layout = detect_layout(arrays, path)
  elif layout not in LAYOUTS:
    raise ValueError(f"layout {layout!r}: expected 'auto' or one of {LAYOUTS}.")
  names = _source_names(layout, depth)
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

  def place(target, name, kernel, bias):
    for key, value in (('kernel', kernel), ('bias', bias)):
      wanted = tuple(target[key].shape)
      if value.shape != wanted:
        raise ValueError(
            f'{path}: {names[name]}.{"weight" if key == "kernel" else "bias"}'
            f' gives {name}/{key} of shape {value.shape}; the model has '
            f'{wanted} (is config.model.width_multiplier 1.0?).')
    return {'kernel': np.ascontiguousarray(kernel), 'bias': bias}

  new = dict(params)
  encoder = dict(params['encoder'])
  for name in vgg.conv_names(depth):
    kernel = tensor(name, 'weight').transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    if name == 'conv1_1' and layout == 'caffe':
      kernel = kernel[:, :, ::-1, :]  # Caffe's BGR input -> RGB.
    encoder[name] = place(params['encoder'][name], name,
                          kernel, tensor(name, 'bias'))
  new['encoder'] = encoder
  channels = tensor('conv5_3' if depth == 16 else 'conv5_4', 'weight').shape[0]
  fc6 = _fc6_rows_to_hwc(tensor('fc6', 'weight').T, channels)
  new['fc6'] = place(params['fc6'], 'fc6', fc6, tensor('fc6', 'bias'))
  new['fc7'] = place(params['fc7'], 'fc7', tensor('fc7', 'weight').T,
                     tensor('fc7', 'bias'))
  if include_output:
    new['output'] = place(params['output'], 'fc8',
                          tensor('fc8', 'weight').T, tensor('fc8', 'bias'))
  return new


# Models whose parameter tree load_vgg fills (EmoNet); CAUD and AUNets start
# from an EmoNet run instead (config.init_from).
IMAGENET_MODELS = ('vgg',)


def initial_params(config, params: PyTree) -> tuple[PyTree, dict[str, Any]]:
  """`params` with `config.imagenet_weights` loaded (train.py calls this
  when a run has no checkpoint of its own and no init_from).

  The file's conv and fc6/fc7 layers replace the model's; the output layer
  keeps its own initialisation (8 emotions, not ImageNet's 1000 classes),
  as the thesis does (sec. 4.1). `config.model.depth` picks VGG-16/19.

  Returns:
    (new params, report {'source', 'layout', 'loaded': [names]}).

  Raises:
    ValueError: a model other than IMAGENET_MODELS, or any load_vgg error
      (missing key, another width: each names the file and tensor).
    FileNotFoundError: the file is missing.
  """
  path = os.path.expanduser(config.imagenet_weights)
  if config.model_name not in IMAGENET_MODELS:
    raise ValueError(
        f'config.imagenet_weights={config.imagenet_weights!r} is set, but '
        f'model {config.model_name!r} does not load ImageNet VGG weights '
        f'(only {IMAGENET_MODELS}); {config.model_name} starts from an '
        'EmoNet run through config.init_from.')
  depth = int(config.model.get('depth', 16))
  layout = detect_layout(read_arrays(path), path)
  new = load_vgg(path, params, depth=depth, layout=layout)
  loaded = [f'encoder/{name}' for name in vgg.conv_names(depth)]
  return new, {'source': os.path.abspath(path), 'layout': layout,
               'loaded': loaded + ['fc6', 'fc7']}
