"""torchvision ResNet and VGG state_dicts through au_jax.weights.

The loaded variables must compute torchvision's eval-mode function: each
network is checked against a float64 numpy forward pass written from
torchvision's definitions (runs everywhere) and, where torch is installed,
against torch's own conv / batch-norm / max-pool operators.
"""

import json
import struct

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import pytest

from au_jax import models
from au_jax import weights
from au_jax.models import resnet
from au_jax.models import vgg
from configs import aunets as aunets_config
from configs import caud as caud_config

jax.config.update('jax_disable_most_optimizations', True)

# torchvision's block layouts, written out independently of resnet.DEPTHS.
STAGES = {18: ('basic', (2, 2, 2, 2)), 34: ('basic', (3, 4, 6, 3)),
          50: ('bottleneck', (3, 4, 6, 3))}
# 64x48: the stride-2 3x3 convs of layer2 and layer3 see even sizes (16x12,
# 8x6), where flax's 'SAME' would pad 0 before / 1 after instead of 1 / 1.
HEIGHT, WIDTH = 64, 48
VGG16_CONVS = (2, 2, 3, 3, 3)


def write_safetensors(path, arrays):
  """A writer from the format's spec, independent of weights.py's reader."""
  codes = {np.dtype('float32'): 'F32', np.dtype('int64'): 'I64'}
  header, offset, chunks = {}, 0, []
  for name, value in arrays.items():
    value = np.asarray(value)
    data = np.ascontiguousarray(value, value.dtype.newbyteorder('<')).tobytes()
    header[name] = {'dtype': codes[value.dtype], 'shape': list(value.shape),
                    'data_offsets': [offset, offset + len(data)]}
    offset += len(data)
    chunks.append(data)
  blob = json.dumps(header).encode()
  with open(path, 'wb') as file:
    file.write(struct.pack('<Q', len(blob)) + blob + b''.join(chunks))


def resnet_state(depth, width, seed=0):
  """A torchvision-named ResNet state_dict (torchvision's _make_layer:
  a downsample branch where the stride or the channel count changes),
  with random batch-norm statistics so that eval mode depends on them."""
  rng = np.random.default_rng(seed)
  block, stages = STAGES[depth]
  expansion = 4 if block == 'bottleneck' else 1
  state = {}

  def conv(name, out, inputs, size):
    state[f'{name}.weight'] = rng.normal(
        0, np.sqrt(2 / (inputs * size * size)), (out, inputs, size, size))

  def norm(name, channels):
    state[f'{name}.weight'] = rng.uniform(0.5, 1.5, channels)
    state[f'{name}.bias'] = rng.normal(0, 0.2, channels)
    state[f'{name}.running_mean'] = rng.normal(0, 0.3, channels)
    state[f'{name}.running_var'] = rng.uniform(0.5, 2.0, channels)
    state[f'{name}.num_batches_tracked'] = np.array(12, np.int64)

  conv('conv1', width, 3, 7)
  norm('bn1', width)
  inputs = width
  for stage, blocks in enumerate(stages):
    planes = width * 2**stage
    for index in range(blocks):
      stride = 2 if stage > 0 and index == 0 else 1
      prefix = f'layer{stage + 1}.{index}'
      if block == 'basic':
        conv(f'{prefix}.conv1', planes, inputs, 3)
        norm(f'{prefix}.bn1', planes)
        conv(f'{prefix}.conv2', planes, planes, 3)
        norm(f'{prefix}.bn2', planes)
      else:
        conv(f'{prefix}.conv1', planes, inputs, 1)
        norm(f'{prefix}.bn1', planes)
        conv(f'{prefix}.conv2', planes, planes, 3)
        norm(f'{prefix}.bn2', planes)
        conv(f'{prefix}.conv3', planes * 4, planes, 1)
        norm(f'{prefix}.bn3', planes * 4)
      if stride != 1 or inputs != planes * expansion:
        conv(f'{prefix}.downsample.0', planes * expansion, inputs, 1)
        norm(f'{prefix}.downsample.1', planes * expansion)
      inputs = planes * expansion
  state['fc.weight'] = rng.normal(0, 0.1, (10, inputs))
  state['fc.bias'] = rng.normal(0, 0.1, 10)
  return {key: value.astype(np.float32) if value.dtype == np.float64
          else value for key, value in state.items()}


def vgg_state(widths, fc_width, pool_cells, seed=0):
  """A torchvision vgg16 state_dict (features.N counts conv, ReLU and pool
  modules) with conv widths per block, fc6 fed by pool_cells positions."""
  rng = np.random.default_rng(seed)
  state, index, inputs = {}, 0, 3
  for block, count in enumerate(VGG16_CONVS):
    for _ in range(count):
      width = widths[block]
      state[f'features.{index}.weight'] = rng.normal(
          0, np.sqrt(2 / (9 * inputs)), (width, inputs, 3, 3))
      state[f'features.{index}.bias'] = rng.normal(0, 0.1, width)
      inputs, index = width, index + 2
    index += 1
  for name, (units, fan_in) in (
      ('classifier.0', (fc_width, inputs * pool_cells)),
      ('classifier.3', (fc_width, fc_width)), ('classifier.6', (10, fc_width))):
    state[f'{name}.weight'] = rng.normal(0, np.sqrt(2 / fan_in),
                                         (units, fan_in))
    state[f'{name}.bias'] = rng.normal(0, 0.1, units)
  return {key: value.astype(np.float32) for key, value in state.items()}


class NumpyOps:
  """torchvision's operators in float64 numpy, NCHW."""

  @staticmethod
  def tensor(x):
    return np.asarray(x, np.float64)

  @staticmethod
  def conv(x, weight, bias=None, stride=1, padding=0):
    x = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    size = weight.shape[2]
    windows = sliding_window_view(x, (size, size), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    y = np.einsum('bchwij,ocij->bohw', windows, np.float64(weight),
                  optimize=True)
    return y if bias is None else y + np.float64(bias)[None, :, None, None]

  @staticmethod
  def batch_norm(x, weight, bias, mean, var):
    scale = np.float64(weight) / np.sqrt(np.float64(var) + 1e-5)
    shift = np.float64(bias) - np.float64(mean) * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]

  @staticmethod
  def max_pool(x, size, stride, padding=0):
    # PyTorch's max-pool never picks its padding: pad with -inf.
    x = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2),
               constant_values=-np.inf)
    windows = sliding_window_view(x, (size, size), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].max(axis=(-2, -1))

  @staticmethod
  def relu(x):
    return np.maximum(x, 0)

  @staticmethod
  def dense(x, weight, bias):
    return x @ np.float64(weight).T + np.float64(bias)

  @staticmethod
  def numpy(x):
    return x


class TorchOps:
  """The same operators from torch.nn.functional (float64)."""

  def __init__(self, torch):
    self.torch = torch
    self.functional = torch.nn.functional

  def tensor(self, x):
    return self.torch.from_numpy(np.asarray(x, np.float64))

  def conv(self, x, weight, bias=None, stride=1, padding=0):
    return self.functional.conv2d(
        x, self.tensor(weight), None if bias is None else self.tensor(bias),
        stride=stride, padding=padding)

  def batch_norm(self, x, weight, bias, mean, var):
    return self.functional.batch_norm(
        x, self.tensor(mean), self.tensor(var), self.tensor(weight),
        self.tensor(bias), training=False, eps=1e-5)

  def max_pool(self, x, size, stride, padding=0):
    return self.functional.max_pool2d(x, size, stride, padding)

  def relu(self, x):
    return self.functional.relu(x)

  def dense(self, x, weight, bias):
    return self.functional.linear(x, self.tensor(weight), self.tensor(bias))

  @staticmethod
  def numpy(x):
    return x.numpy()


def resnet_forward(ops, state, image, depth):
  """torchvision's ResNet forward up to layer4 (eval mode); image NHWC."""
  block, stages = STAGES[depth]

  def norm(x, name):
    return ops.batch_norm(x, *(state[f'{name}.{kind}'] for kind in (
        'weight', 'bias', 'running_mean', 'running_var')))

  x = ops.tensor(image.transpose(0, 3, 1, 2))
  x = ops.relu(norm(ops.conv(x, state['conv1.weight'], stride=2,
                             padding=3), 'bn1'))
  x = ops.max_pool(x, 3, 2, 1)
  for stage, blocks in enumerate(stages):
    for index in range(blocks):
      stride = 2 if stage > 0 and index == 0 else 1
      prefix = f'layer{stage + 1}.{index}'
      weight = lambda name, p=prefix: state[f'{p}.{name}.weight']
      if block == 'basic':
        y = ops.relu(norm(ops.conv(x, weight('conv1'), stride=stride,
                                   padding=1), f'{prefix}.bn1'))
        y = norm(ops.conv(y, weight('conv2'), padding=1), f'{prefix}.bn2')
      else:  # v1.5: the stride on the 3x3 conv.
        y = ops.relu(norm(ops.conv(x, weight('conv1')), f'{prefix}.bn1'))
        y = ops.relu(norm(ops.conv(y, weight('conv2'), stride=stride,
                                   padding=1), f'{prefix}.bn2'))
        y = norm(ops.conv(y, weight('conv3')), f'{prefix}.bn3')
      identity = x
      if f'{prefix}.downsample.0.weight' in state:
        identity = norm(ops.conv(x, weight('downsample.0'), stride=stride),
                        f'{prefix}.downsample.1')
      x = ops.relu(y + identity)
  return ops.numpy(x).transpose(0, 2, 3, 1)  # NHWC like au_jax.


def vgg_forward(ops, state, image):
  """torchvision's VGG-16 forward up to fc7's ReLU (eval: no dropout)."""
  x, index = ops.tensor(image.transpose(0, 3, 1, 2)), 0
  for count in VGG16_CONVS:
    for _ in range(count):
      x = ops.relu(ops.conv(x, state[f'features.{index}.weight'],
                            state[f'features.{index}.bias'], padding=1))
      index += 2
    x = ops.max_pool(x, 2, 2)
    index += 1
  x = x.reshape(x.shape[0], -1)  # CHW flatten, as torch.flatten.
  for name in ('classifier.0', 'classifier.3'):
    x = ops.relu(ops.dense(x, state[f'{name}.weight'], state[f'{name}.bias']))
  return ops.numpy(x)


def _image(batch=2, height=HEIGHT, width=WIDTH, seed=1):
  return np.random.default_rng(seed).normal(
      size=(batch, height, width, 3)).astype(np.float32)


def _save_both(tmp_path, stem, state):
  np.savez(tmp_path / f'{stem}.npz', **state)
  write_safetensors(tmp_path / f'{stem}.safetensors', state)
  return [str(tmp_path / f'{stem}.{ext}') for ext in ('npz', 'safetensors')]


def _resnet_config(depth, width, path=None):
  return ml_collections.ConfigDict({
      'model_name': 'resnet', 'aus': [1, 2, 4],
      'model': {'depth': depth, 'width': width}, 'imagenet_weights': path})


def _assert_close(actual, expected):
  """Within 1e-4 of the output's scale (float32 against float64)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected)
  assert actual.shape == expected.shape
  scale = np.abs(expected).max()
  assert scale > 0.1  # A live network, not an all-zero map.
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.fixture(scope='module', params=[18, 50])
def resnet_case(request, tmp_path_factory):
  """(depth, width, state, files, trunk output of the loaded variables)."""
  depth = request.param
  width = 8 if depth == 18 else 4
  state = resnet_state(depth, width)
  files = _save_both(tmp_path_factory.mktemp(f'resnet{depth}'), 'net', state)
  config = _resnet_config(depth, width)
  model = models.create(config)
  image = _image()
  # Shapes suffice: the file replaces every trunk variable, and only the
  # trunk runs (eagerly: compiling it would take longer than running it).
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), {'image': jnp.asarray(image)}, False))
  trunk = resnet.ResNet(depth, width)
  apply = lambda v, x: trunk.apply(v, x, False)
  outputs, reports = [], []
  for path in files:
    config.imagenet_weights = path
    loaded, report = weights.initial_variables(config, variables)
    outputs.append(np.asarray(apply(
        {'params': loaded['params']['stem'],
         'batch_stats': loaded['batch_stats']['stem']}, image)))
    reports.append(report)
  return depth, width, state, outputs, reports, image


def test_resnet_matches_a_numpy_torchvision_forward(resnet_case):
  depth, width, state, outputs, reports, image = resnet_case
  expected = resnet_forward(NumpyOps, state, image, depth)
  # 64x48 -> ceil(/32) = 2x2; channels 8 * 8 (basic) or 32 * 4 (bottleneck).
  assert expected.shape == (2, 2, 2, resnet.output_channels(depth, width))
  for output in outputs:  # .npz and .safetensors.
    _assert_close(output, expected)
  for report in reports:
    assert report['architecture'] == 'resnet'
    assert report['unused_source'] == ['fc.bias', 'fc.weight']
    assert 'stem/layer2_0/downsample_bn/var' in report['loaded']
    # Every conv (1 kernel), and every batch-norm (4 tensors).
    convs = sum(key.endswith('.weight') and state[key].ndim == 4
                for key in state)
    norms = sum(key.endswith('running_mean') for key in state)
    assert len(report['loaded']) == convs + 4 * norms


def test_resnet_matches_torch_operators(resnet_case):
  torch = pytest.importorskip('torch')
  depth, _, state, outputs, _, image = resnet_case
  expected = resnet_forward(TorchOps(torch), state, image, depth)
  _assert_close(outputs[0], expected)


def test_lpnet_stem_takes_resnet34_with_running_statistics(tmp_path):
  state = resnet_state(34, 4)
  path = tmp_path / 'resnet34.safetensors'
  write_safetensors(path, state)
  config = ml_collections.ConfigDict({
      'model_name': 'lpnet', 'aus': [1, 2],
      'model': {'depth': 34, 'width': 4, 'lstm_features': 8,
                'pnet_hidden': 8},
      'imagenet_weights': str(path)})
  batch = {'image': jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32),
           'landmarks': jax.ShapeDtypeStruct((1, 68, 2), jnp.float32)}
  model = models.create(config)
  variables = jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, False), batch)
  loaded, report = weights.initial_variables(config, variables)
  stem, stats = loaded['params']['stem'], loaded['batch_stats']['stem']
  np.testing.assert_array_equal(stem['conv1']['kernel'],
                                state['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(stem['layer3_5']['bn2']['scale'],
                                state['layer3.5.bn2.weight'])
  np.testing.assert_array_equal(stats['layer4_0']['downsample_bn']['mean'],
                                state['layer4.0.downsample.1.running_mean'])
  np.testing.assert_array_equal(stats['bn1']['var'],
                                state['bn1.running_var'])
  # The L-Net and P-Net keep their own (here: abstract) initialisation.
  assert isinstance(loaded['params']['lnet'], type(variables['params']['lnet']))
  assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in
             jax.tree.leaves(loaded['params']['pnet']))
  assert all(name.startswith('stem/') for name in report['loaded'])


@pytest.fixture(scope='module')
def vgg_case(tmp_path_factory):
  """(state, image, [(fc7 output, report) per file], initial variables)."""
  # Width 1/16 (convs 4, 8, 16, 32, 32; fc 256); 64 px -> pool5 2x2x32, so
  # fc6's rows need the CHW -> HWC permutation.
  state = vgg_state((4, 8, 16, 32, 32), 256, pool_cells=4)
  config = ml_collections.ConfigDict({
      'model_name': 'vgg', 'aus': list(range(8)),
      'model': {'width_multiplier': 1 / 16}})
  model = models.create(config)
  image = _image(height=64, width=64)
  # Shapes only (an eager init takes seconds); what the file leaves alone
  # (the output layer) stays abstract, then zeros to run the network.
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), {'image': jnp.asarray(image)}, train=False))
  concrete = lambda tree: jax.tree.map(
      lambda leaf: np.zeros(leaf.shape, leaf.dtype)
      if isinstance(leaf, jax.ShapeDtypeStruct) else leaf, tree)
  results = []
  for path in _save_both(tmp_path_factory.mktemp('vgg'), 'vgg16', state):
    config.imagenet_weights = path
    loaded, report = weights.initial_variables(config, variables)
    _, aux = model.apply(concrete(loaded), {'image': image}, train=False)
    results.append((np.asarray(aux['features']), report, loaded))
  return state, image, results, variables


def test_vgg_matches_a_numpy_torchvision_forward(vgg_case):
  state, image, results, variables = vgg_case
  expected = vgg_forward(NumpyOps, state, image)
  for features, report, loaded in results:  # .npz and .safetensors.
    _assert_close(features, expected)
    assert report['loaded'] == sorted(
        [f'encoder/{name}' for name in vgg.conv_names(16)] + ['fc6', 'fc7'])
    assert report['unused_source'] == ['classifier.6.weight',
                                       'classifier.6.bias']
    # EmoNet's 8-way output keeps its own (here: abstract) initialisation.
    assert loaded['params']['output'] == variables['params']['output']
    assert all(isinstance(leaf, jax.ShapeDtypeStruct)
               for leaf in jax.tree.leaves(loaded['params']['output']))


def test_vgg_matches_torch_operators(vgg_case):
  torch = pytest.importorskip('torch')
  state, image, results, _ = vgg_case
  _assert_close(results[0][0], vgg_forward(TorchOps(torch), state, image))


def _abstract(config):
  size = config.crop_size
  batch = {'image': jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
           'flow': jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)}
  model = models.create(config)
  return jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False), batch)


def test_caud_and_aunets_adapt_the_vgg_file(tmp_path):
  # The test configs: width 1/16, 32 px -> pool5 1x1x32, fc 256.
  state = vgg_state((4, 8, 16, 32, 32), 256, pool_cells=1)
  path = tmp_path / 'vgg16.npz'
  np.savez(path, **state)
  fc6 = state['classifier.0.weight'].T
  caud = caud_config.get_config('test')
  with caud.unlocked():
    caud.imagenet_weights = str(path)
  loaded, report = weights.initial_variables(caud, _abstract(caud))
  heads = [name for name in loaded['params'] if name.startswith('head_')]
  assert len(heads) == len(caud.aus) == 2
  for head in heads:  # Every head starts from the file's fc6 and fc7.
    np.testing.assert_array_equal(loaded['params'][head]['fc6']['kernel'],
                                  fc6)
    assert f'{head}/fc7' in report['loaded']
  aunets = aunets_config.get_config('test-channels')
  aunets.init_from = None
  with aunets.unlocked():
    aunets.imagenet_weights = str(path)
  loaded, _ = weights.initial_variables(aunets, _abstract(aunets))
  conv1 = loaded['params']['encoder']['conv1_1']['kernel']
  assert conv1.shape == (3, 3, 6, 4)  # RGB and flow filters, both copies.
  for half in (conv1[:, :, :3], conv1[:, :, 3:]):
    np.testing.assert_array_equal(
        half, state['features.0.weight'].transpose(2, 3, 1, 0))


def test_load_errors_name_the_file(tmp_path):
  state = resnet_state(18, 4)
  good = tmp_path / 'resnet18.safetensors'
  write_safetensors(good, state)
  data = good.read_bytes()
  truncated = tmp_path / 'cut.safetensors'
  truncated.write_bytes(data[:-100])
  with pytest.raises(ValueError, match=r'cut\.safetensors: truncated'):
    weights.read_arrays(str(truncated))
  (tmp_path / 'stub.safetensors').write_bytes(data[:20])
  with pytest.raises(ValueError, match=r'stub\.safetensors: truncated'):
    weights.read_arrays(str(tmp_path / 'stub.safetensors'))
  (tmp_path / 'net.pth').write_bytes(b'\x80\x04pickle')
  with pytest.raises(ValueError, match=r'net\.pth: pickled.*pth-to-npz'):
    weights.read_arrays(str(tmp_path / 'net.pth'))
  np.savez(tmp_path / 'objects.npz', a=np.array([{'x': 1}], dtype=object))
  with pytest.raises(ValueError, match=r"objects\.npz: array 'a'.*pickle"):
    weights.read_arrays(str(tmp_path / 'objects.npz'))
  np.savez(tmp_path / 'whole.npz', **state)
  (tmp_path / 'half.npz').write_bytes(
      (tmp_path / 'whole.npz').read_bytes()[:5000])
  with pytest.raises(ValueError, match=r'half\.npz: not a readable \.npz'):
    weights.read_arrays(str(tmp_path / 'half.npz'))

  def load(config_state, depth=18, width=4, name='bad.npz'):
    np.savez(tmp_path / name, **config_state)
    config = _resnet_config(depth, width, str(tmp_path / name))
    model = models.create(config)
    variables = jax.eval_shape(lambda: model.init(
        jax.random.key(0), {'image': jnp.zeros((1, 32, 32, 3))}, False))
    return weights.initial_variables(config, variables)

  without = {k: v for k, v in state.items()
             if k != 'layer1.0.bn1.running_var'}
  with pytest.raises(ValueError,
                     match=r'bad\.npz.*missing.*layer1\.0\.bn1\.running_var'):
    load(without)
  with pytest.raises(ValueError, match=r'bad\.npz.*missing.*layer1\.2'):
    load(state, depth=34)
  with pytest.raises(ValueError, match=r'bad\.npz: bn1\.weight gives '
                     r'bn1/scale of shape \(4,\); the model has \(8,\)'):
    load(state, width=8)
  vgg_model = ml_collections.ConfigDict({
      'model_name': 'vgg', 'aus': [0], 'model': {'width_multiplier': 1 / 16},
      'imagenet_weights': str(good)})
  with pytest.raises(ValueError, match=r"resnet18\.safetensors holds a "
                     r"ResNet, but model 'vgg'"):
    weights.initial_variables(vgg_model, {'params': {'encoder': {}}})
