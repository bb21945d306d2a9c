"""VGG-16/19 (au_jax/models/vgg.py) and the ImageNet weight loader."""

import json
import struct

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax import models
from au_jax import weights
from au_jax.models import vgg
from configs import emonet
from au_jax import checkpointing, config_checks, runs, train

jax.config.update('jax_disable_most_optimizations', True)


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def init(model, batch):
  return model.init(jax.random.key(0), batch, train=False)


def _abstract_params(model, size=224):
  batch = {'image': jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)}
  return jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False), batch)['params']


def test_parameter_counts_equal_the_standard_definitions():
  # torchvision.models.vgg16() / vgg19(): 1000 ImageNet classes.
  assert _count(_abstract_params(vgg.Model(1000))) == 138_357_544
  assert _count(_abstract_params(vgg.Model(1000, depth=19))) == 143_667_240
  # EmoNet: fc8 replaced by 8 emotions (4096 * 8 + 8 = 32,776 weights).
  emonet = _abstract_params(vgg.Model(8))
  assert _count(emonet) == 138_357_544 - 4_097_000 + 32_776
  assert _count(emonet['encoder']) == 14_714_688
  assert emonet['fc6']['kernel'].shape == (7 * 7 * 512, 4096)
  assert emonet['output']['kernel'].shape == (4096, 8)
  assert list(emonet['encoder']) == vgg.conv_names(16)


def test_create_with_width_multiplier_runs_a_tiny_forward_pass():
  config = ml_collections.ConfigDict({
      'model_name': 'vgg', 'aus': list(range(8)),
      'model': {'width_multiplier': 1 / 16, 'dropout_rate': 0.5}})
  model = models.create(config)
  batch = {'image': jax.random.normal(jax.random.key(1), (2, 32, 32, 3))}
  variables = init(model, batch)
  params = variables['params']
  assert set(params) == {'encoder', 'fc6', 'fc7', 'output'}
  assert params['encoder']['conv5_3']['kernel'].shape == (3, 3, 32, 32)
  assert params['fc6']['kernel'].shape == (32, 256)  # pool5 1x1x32.
  logits, aux = model.apply(variables, batch, train=False)
  assert logits.shape == (2, 8) and logits.dtype == jnp.float32
  assert aux['features'].shape == (2, 256)
  # Dropout is active in training only.
  train_logits, _ = model.apply(variables, batch, train=True,
                                rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(train_logits, logits)


def test_two_way_output_returns_the_score_difference():
  model = vgg.Model(3, width_multiplier=1 / 16, two_way_output=True)
  batch = {'image': jax.random.normal(jax.random.key(1), (2, 32, 32, 3))}
  variables = init(model, batch)
  assert variables['params']['output']['kernel'].shape == (256, 6)
  logits, aux = model.apply(variables, batch, train=False)
  pairs = aux['two_way_logits']
  assert pairs.shape == (2, 3, 2)
  np.testing.assert_allclose(logits, pairs[..., 1] - pairs[..., 0], rtol=1e-6)
  # softmax([z0, z1])[1] == sigmoid(z1 - z0).
  np.testing.assert_allclose(jax.nn.softmax(pairs, axis=-1)[..., 1],
                             jax.nn.sigmoid(logits), rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = vgg.Model(2, width_multiplier=1 / 16, dtype=jnp.bfloat16)
  batch = {'image': jnp.ones((1, 32, 32, 3))}
  variables = init(model, batch)
  assert all(leaf.dtype == jnp.float32
             for leaf in jax.tree.leaves(variables['params']))
  logits, _ = model.apply(variables, batch, train=False)
  assert logits.dtype == jnp.float32


def test_bad_image_shape_is_a_clear_error():
  with pytest.raises(ValueError, match=r'\[B, H, W, 3\]'):
    vgg.Model(2, width_multiplier=1 / 16).init(
        jax.random.key(0), {'image': jnp.ones((1, 32, 32))}, train=False)


# An independent implementation: PyTorch layers in torchvision's module order.
WIDTH = 1 / 16
SIZE = 64  # pool5 is 2x2, so fc6's CHW -> HWC row permutation matters.


def _torch_vgg(torch, num_classes=5):
  layers, in_channels = [], 3
  for block, count in enumerate(vgg.BLOCKS[16]):
    for _ in range(count):
      out = vgg.scaled(vgg.BLOCK_WIDTHS[block], WIDTH)
      layers += [torch.nn.Conv2d(in_channels, out, 3, padding=1),
                 torch.nn.ReLU()]
      in_channels = out
    layers.append(torch.nn.MaxPool2d(2, 2))
  units = vgg.scaled(4096, WIDTH)
  net = torch.nn.Module()
  net.features = torch.nn.Sequential(*layers)
  net.classifier = torch.nn.Sequential(
      torch.nn.Linear(in_channels * 4, units), torch.nn.ReLU(),
      torch.nn.Dropout(), torch.nn.Linear(units, units), torch.nn.ReLU(),
      torch.nn.Dropout(), torch.nn.Linear(units, num_classes))
  net.eval()

  def forward(x_nhwc):
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    with torch.no_grad():
      x = net.features(x)
      return net.classifier(torch.flatten(x, 1)).numpy()  # CHW flatten.
  return net, forward


def _write_safetensors(path, arrays):
  """A from-the-spec writer, independent of weights.py's reader."""
  header, offset, chunks = {}, 0, []
  for name, value in arrays.items():
    data = np.ascontiguousarray(value, '<f4').tobytes()
    header[name] = {'dtype': 'F32', 'shape': list(value.shape),
                    'data_offsets': [offset, offset + len(data)]}
    offset += len(data)
    chunks.append(data)
  blob = json.dumps(header).encode()
  with open(path, 'wb') as file:
    file.write(struct.pack('<Q', len(blob)) + blob + b''.join(chunks))


@pytest.fixture(scope='module')
def torch_reference():
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  net, forward = _torch_vgg(torch)
  state = {key: value.numpy() for key, value in net.state_dict().items()}
  image = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(
      np.float32)
  return state, forward, image


def _loaded_logits(path, image, **kwargs):
  model = vgg.Model(5, width_multiplier=WIDTH)
  params = init(model, {'image': image})
  params = weights.load_vgg(str(path), params['params'], include_output=True,
                            **kwargs)
  logits, _ = model.apply({'params': params}, {'image': image}, train=False)
  return np.asarray(logits)


def test_torchvision_layout_npz_and_safetensors_match_pytorch(
    torch_reference, tmp_path):
  state, forward, image = torch_reference
  expected = forward(image)
  np.savez(tmp_path / 'vgg.npz', **state)
  _write_safetensors(tmp_path / 'vgg.safetensors', state)
  for name in ('vgg.npz', 'vgg.safetensors'):
    np.testing.assert_allclose(_loaded_logits(tmp_path / name, image),
                               expected, rtol=1e-4, atol=1e-5)


def test_caffe_layout_reads_bgr_weights_for_rgb_input(torch_reference,
                                                      tmp_path):
  state, forward, image = torch_reference
  names = weights.torchvision_names(16)
  caffe = {f'{name}.{kind}': state[f'{prefix}.{kind}']
           for name, prefix in names.items() for kind in ('weight', 'bias')}
  np.savez(tmp_path / 'caffe.npz', **caffe)
  # The file's network reads BGR; the loaded one must read RGB.
  expected = forward(image[..., ::-1])
  np.testing.assert_allclose(_loaded_logits(tmp_path / 'caffe.npz', image),
                             expected, rtol=1e-4, atol=1e-5)


def test_loader_refuses_pickles_and_mismatches(torch_reference, tmp_path):
  state, _, image = torch_reference
  (tmp_path / 'vgg.pth').write_bytes(b'\x80\x04pickle')
  with pytest.raises(ValueError, match=r'vgg\.pth.*not read'):
    weights.read_arrays(str(tmp_path / 'vgg.pth'))
  with pytest.raises(FileNotFoundError, match='missing.npz'):
    weights.read_arrays(str(tmp_path / 'missing.npz'))
  np.savez(tmp_path / 'objects.npz', a=np.array([{'x': 1}], dtype=object))
  with pytest.raises(ValueError):  # np.load(allow_pickle=False) refuses.
    weights.read_arrays(str(tmp_path / 'objects.npz'))
  np.savez(tmp_path / 'bn.npz', **state, **{
      'features.1.running_mean': np.zeros(4, np.float32)})
  with pytest.raises(ValueError, match=r"bn\.npz.*features\.1\.running_mean"):
    _loaded_logits(tmp_path / 'bn.npz', image)
  np.savez(tmp_path / 'vgg.npz', **state)
  wide = vgg.Model(5, width_multiplier=WIDTH * 2)
  params = jax.eval_shape(lambda b: init(wide, b), {'image': image})
  with pytest.raises(ValueError,
                     match=r'vgg\.npz: features\.0\.weight.*conv1_1'):
    weights.load_vgg(str(tmp_path / 'vgg.npz'), params['params'])


def test_emonet_configs_build_an_8_way_vgg():
  for variant, fc6_rows in (('', 2 * 2 * 64), ('paper', 7 * 7 * 512),
                            ('test', 1 * 1 * 32)):
    config = emonet.get_config(variant)
    model = models.create(config)
    assert (model.num_aus, config.classify_field) == (8, 'emotion')
    params = _abstract_params(model, config.crop_size)
    assert params['output']['kernel'].shape[-1] == 8
    assert params['fc6']['kernel'].shape[0] == fc6_rows
  with pytest.raises(ValueError, match="unknown variant 'gpu'"):
    emonet.get_config('gpu')


def test_he_fc_init_keeps_the_signal_of_a_narrow_net():
  """fc_init='he': a width-1/8 net's logits keep their scale; N(0, 0.01)
  shrinks them ~10x per FC layer (vgg.py docstring: the CPU EmoNet that sat
  at its class prior)."""
  image = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
  scale = {}
  for name in ('torchvision', 'he'):
    model = vgg.Model(8, width_multiplier=1 / 8, fc_width=2048, fc_init=name)
    logits, aux = model.apply(init(model, {'image': image}),
                              {'image': image}, train=False)
    scale[name] = (float(jnp.std(aux['features'])), float(jnp.std(logits)))
  # fc7 output std: He keeps O(0.1-1); N(0, 0.01) over 64 (pool5 1x1x64)
  # and 256 inputs multiplies the std by about 0.01 sqrt(n) <= 0.16 per
  # layer.
  assert scale['he'][0] > 0.1 and scale['torchvision'][0] < 0.05
  assert scale['he'][1] > 30 * scale['torchvision'][1]
  with pytest.raises(ValueError, match="fc_init='xavier'"):
    init(vgg.Model(8, width_multiplier=1 / 8, fc_init='xavier'),
         {'image': image})


# torchvision vgg16 state_dict prefixes, written out by hand (conv, ReLU and
# pool modules count in `features`).
_TORCHVISION_PREFIXES = {
    'conv1_1': 'features.0', 'conv1_2': 'features.2',
    'conv2_1': 'features.5', 'conv2_2': 'features.7',
    'conv3_1': 'features.10', 'conv3_2': 'features.12',
    'conv3_3': 'features.14', 'conv4_1': 'features.17',
    'conv4_2': 'features.19', 'conv4_3': 'features.21',
    'conv5_1': 'features.24', 'conv5_2': 'features.26',
    'conv5_3': 'features.28', 'fc6': 'classifier.0', 'fc7': 'classifier.3',
    'fc8': 'classifier.6'}


def test_imagenet_weights_start_emonet(tiny_data_dir, tmp_path):
  """config.imagenet_weights: a hand-made torchvision-layout VGG-16 at the
  test width is the run's starting point. With the loaded layers frozen,
  the trained checkpoint still holds the file's values exactly."""
  config = emonet.get_config('test')
  config.data_dir = tiny_data_dir
  # Test width 1/16: convs 4, 8, 16, 32, 32 channels; 32 px -> pool5 1x1x32.
  widths = [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
  rng = np.random.default_rng(0)
  arrays, inputs = {}, 3
  for name, width in zip(vgg.conv_names(16), widths):
    prefix = _TORCHVISION_PREFIXES[name]
    arrays[f'{prefix}.weight'] = rng.normal(size=(width, inputs, 3, 3))
    arrays[f'{prefix}.bias'] = rng.normal(size=width)
    inputs = width
  for name, (units, fan_in) in (('fc6', (256, 32)), ('fc7', (256, 256)),
                                ('fc8', (10, 256))):
    prefix = _TORCHVISION_PREFIXES[name]
    arrays[f'{prefix}.weight'] = rng.normal(size=(units, fan_in))
    arrays[f'{prefix}.bias'] = rng.normal(size=units)
  arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
  path = tmp_path / 'vgg16_tiny.npz'
  np.savez(path, **arrays)
  config.imagenet_weights = str(path)
  config.frozen = r'^(encoder|fc6|fc7)/.*'
  workdir = str(tmp_path / 'work')
  train.train_and_evaluate(config, workdir)
  directory = runs.run_dir(config, workdir, 1)
  raw, step = checkpointing.restore_raw(directory)
  assert step == config.num_train_steps
  params = raw['params']
  np.testing.assert_array_equal(  # OIHW -> HWIO.
      params['encoder']['conv1_1']['kernel'],
      arrays['features.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params['encoder']['conv5_3']['bias'],
                                arrays['features.28.bias'])
  np.testing.assert_array_equal(params['fc7']['kernel'],
                                arrays['classifier.3.weight'].T)
  # 1x1 pool5: fc6's rows need no CHW -> HWC permutation here.
  np.testing.assert_array_equal(params['fc6']['kernel'],
                                arrays['classifier.0.weight'].T)
  assert params['output']['kernel'].shape == (256, 8)  # Not ImageNet's fc8.
  with open(f'{directory}/imagenet_weights.json') as f:
    report = json.load(f)
  assert report['layout'] == 'torchvision' and len(report['loaded']) == 15
  # A narrow CPU EmoNet cannot take them: the error names file and tensor.
  wide = emonet.get_config('test')
  wide.imagenet_weights = str(path)
  wide.model.width_multiplier = 1 / 8
  params = _abstract_params(models.create(wide), wide.crop_size)
  with pytest.raises(ValueError, match=r'vgg16_tiny\.npz: features\.0'):
    weights.initial_variables(wide, {'params': params})
  # One starting point per run.
  both = emonet.get_config('test')
  both.imagenet_weights = str(path)
  both.init_from = ml_collections.ConfigDict({'method': 'classify'})
  with pytest.raises(ValueError, match='config.imagenet_weights'):
    config_checks.check_config(both)
