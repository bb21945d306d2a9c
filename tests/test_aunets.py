"""AUNets: fusion variants, their sizes (paper table 3), weight copies, loss."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax.methods import aunets as aunets_method
from au_jax.models import aunets
from au_jax.models import caud
from au_jax.models import vgg
from au_jax import models
from au_jax import optim
from configs import aunets as aunets_config

jax.config.update('jax_disable_most_optimizations', True)

WIDTH = 1 / 16
SIZE = 64  # pool5 2x2: fc6 row copies keep their spatial meaning.


def _batch(size, abstract=True, batch_size=1):
  if abstract:
    image = jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32)
    return {'image': image, 'flow': image}
  keys = jax.random.split(jax.random.key(3))
  return {'image': jax.random.normal(keys[0], (batch_size, size, size, 3)),
          'flow': jax.random.normal(keys[1], (batch_size, size, size, 3))}


def _abstract(model, size):
  return jax.eval_shape(lambda b: model.init(
      jax.random.key(0), b, train=False), _batch(size))['params']


# (total, learnable) at full size, one AU; paper table 3 in millions.
TABLE_3 = {'rgb': (134, 134), 'flow': (134, 134), 'channels': (134, 134),
           'horizontal': (237, 237), 'pi_conv': (251, 237),
           'pi_fc6': (268, 151), 'pi_fc7': (268, 134)}


@pytest.mark.parametrize('fusion', aunets.FUSIONS)
def test_parameter_counts_match_paper_table_3(fusion):
  params = _abstract(aunets.Model(1, fusion=fusion), 224)
  frozen = aunets.frozen_regex(fusion)
  total = learnable = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    size = int(np.prod(leaf.shape))
    total += size
    # re.search: the regex must not catch 'motion_encoder' etc.
    if not (frozen and re.search(frozen, '/'.join(k.key for k in path))):
      learnable += size
  paper_total, paper_learnable = TABLE_3[fusion]
  assert abs(total / 1e6 - paper_total) / paper_total < 0.01, total
  assert abs(learnable / 1e6 - paper_learnable) / paper_learnable < 0.01
  assert params['output']['kernel'].shape[-1] == 2  # 2-way softmax, 1 AU.
  if fusion == 'horizontal':  # 224x448 input: pool5 7x14x512.
    assert params['fc6']['kernel'].shape == (7 * 14 * 512, 4096)


def test_frozen_regex_per_fusion():
  assert aunets.frozen_regex('rgb') == ''
  assert aunets.frozen_regex('pi_fc6') == '^(encoder|fc6)/.*'
  assert not re.search(aunets.frozen_regex('pi_fc7'),
                       'motion_encoder/conv1_1/kernel')
  with pytest.raises(ValueError, match="fusion 'late'"):
    aunets.frozen_regex('late')


def test_fusion_output_shapes_and_missing_flow_error():
  for fusion in aunets.FUSIONS:
    model = aunets.Model(3, fusion=fusion, width_multiplier=WIDTH)
    params = _abstract(model, 32)
    logits, aux = jax.eval_shape(lambda p, b: model.apply(
        {'params': p}, b, train=False), params, _batch(32, batch_size=2))
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    assert aux['two_way_logits'].shape == (2, 3, 2)
    streams = 2 if fusion == 'pi_fc7' else 1
    assert aux['features'].shape == (2, streams * 256)
  model = aunets.Model(1, fusion='channels', width_multiplier=WIDTH)
  image_only = {'image': jnp.zeros((1, 32, 32, 3))}
  with pytest.raises(ValueError, match=r"needs batch\['flow'\]"):
    model.init(jax.random.key(0), image_only, train=False)
  # 'rgb' ignores flow; 'flow' (Alone) needs no image.
  jax.eval_shape(lambda b: aunets.Model(1, width_multiplier=WIDTH).init(
      jax.random.key(0), b, train=False), image_only)
  alone = aunets.Model(1, fusion='flow', width_multiplier=WIDTH)
  jax.eval_shape(lambda b: alone.init(jax.random.key(0), b, train=False),
                 {'flow': image_only['image']})


@pytest.fixture(scope='module')
def rgb_source():
  """A trained-RGB stand-in: an RGB AUNet (same layout as a binary VGG)."""
  model = aunets.Model(1, width_multiplier=WIDTH)
  batch = _batch(SIZE, abstract=False, batch_size=2)
  params = model.init(jax.random.key(7), batch, train=False)['params']
  return model, params, batch


def test_channels_copies_rgb_filters_for_flow(rgb_source):
  model, source, batch = rgb_source
  target = aunets.Model(1, fusion='channels', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(target, source, _abstract(target, SIZE))
  kernel = mapped['encoder']['conv1_1']['kernel']
  assert kernel.shape == (3, 3, 6, 4)
  np.testing.assert_array_equal(kernel[:, :, 3:], kernel[:, :, :3])
  np.testing.assert_array_equal(kernel[:, :, :3],
                                source['encoder']['conv1_1']['kernel'])
  # With no motion (flow image 0), the fused net is the RGB net.
  still = dict(batch, flow=jnp.zeros_like(batch['flow']))
  expected, _ = model.apply({'params': source}, batch, train=False)
  fused, _ = target.apply({'params': mapped}, still, train=False)
  np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)


def test_horizontal_and_pi_conv_duplicate_fc6_rows(rgb_source):
  _, source, _ = rgb_source
  rows = source['fc6']['kernel'].reshape(2, 2, 32, -1)  # pool5 [h, w, c].
  horizontal = aunets.Model(1, fusion='horizontal', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(horizontal, source,
                               _abstract(horizontal, SIZE))
  grid = mapped['fc6']['kernel'].reshape(2, 4, 32, -1)  # [rgb | flow] on w.
  np.testing.assert_array_equal(grid[:, :2], rows)
  np.testing.assert_array_equal(grid[:, 2:], rows)
  pi_conv = aunets.Model(1, fusion='pi_conv', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(pi_conv, source, _abstract(pi_conv, SIZE))
  grid = mapped['fc6']['kernel'].reshape(2, 2, 64, -1)  # rgb, flow channels.
  np.testing.assert_array_equal(grid[:, :, :32], rows)
  np.testing.assert_array_equal(grid[:, :, 32:], rows)
  jax.tree.map(np.testing.assert_array_equal, mapped['motion_encoder'],
               source['encoder'])
  assert 'motion_fc6' not in mapped


def test_pi_streams_start_as_copies_and_outputs_reset(rgb_source):
  _, source, batch = rgb_source
  pi_fc6 = aunets.Model(1, fusion='pi_fc6', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(pi_fc6, source, _abstract(pi_fc6, SIZE))
  assert set(mapped) == {'encoder', 'motion_encoder', 'fc6', 'motion_fc6',
                         'fc7', 'output'}
  np.testing.assert_array_equal(mapped['fc7']['kernel'][:256],
                                source['fc7']['kernel'])
  np.testing.assert_array_equal(mapped['fc7']['kernel'][256:],
                                source['fc7']['kernel'])
  # Same input in both streams -> identical stream activations.
  same = dict(batch, flow=batch['image'])
  _, state = pi_fc6.apply({'params': mapped}, same, train=False,
                          capture_intermediates=True)
  inter = state['intermediates']
  np.testing.assert_array_equal(inter['fc6']['__call__'][0],
                                inter['motion_fc6']['__call__'][0])
  pi_fc7 = aunets.Model(1, fusion='pi_fc7', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(pi_fc7, source, _abstract(pi_fc7, SIZE))
  assert 'output' not in mapped  # Fan-in doubled: the output starts anew.
  jax.tree.map(np.testing.assert_array_equal, mapped['motion_fc7'],
               source['fc7'])


def test_adapt_from_hydranet_head_and_pass_through(rgb_source):
  _, source, _ = rgb_source
  hydra = {'encoder': source['encoder'],
           'head_0': {k: source[k] for k in ('fc6', 'fc7', 'output')}}
  target = aunets.Model(1, width_multiplier=WIDTH)
  shapes = _abstract(target, SIZE)
  mapped = aunets.adapt_params(target, hydra, shapes)
  jax.tree.map(np.testing.assert_array_equal, mapped, source)
  # A checkpoint already in the fusion's layout passes through unchanged.
  horizontal = aunets.Model(1, fusion='horizontal', width_multiplier=WIDTH)
  once = aunets.adapt_params(horizontal, source, _abstract(horizontal, SIZE))
  twice = aunets.adapt_params(horizontal, once, _abstract(horizontal, SIZE))
  jax.tree.map(np.testing.assert_array_equal, twice, once)
  two_heads = caud.join_heads([hydra, hydra])
  with pytest.raises(ValueError, match='2 heads'):
    aunets.adapt_params(target, two_heads, shapes)
  wide = aunets.Model(1, width_multiplier=2 * WIDTH)
  with pytest.raises(ValueError, match='shape'):
    aunets.adapt_params(wide, source, _abstract(wide, SIZE))


def test_emonet_output_is_not_carried_over():
  emonet = jax.eval_shape(lambda b: vgg.Model(8, width_multiplier=WIDTH).init(
      jax.random.key(0), b, train=False), {'image': _batch(32)['image']})
  emonet = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), emonet)
  target = aunets.Model(1, width_multiplier=WIDTH)
  mapped = aunets.adapt_params(target, emonet['params'], _abstract(target, 32))
  assert set(mapped) == {'encoder', 'fc6', 'fc7'}


def test_loss_is_two_way_softmax_cross_entropy_by_hand():
  # Two frames, one AU: 2-way scores (absent, present) chosen by hand.
  pairs = np.array([[[0.2, 1.5]], [[2.0, -1.0]], [[0.0, 0.0]]], np.float32)
  labels = np.array([[1], [1], [-1]])
  # -log softmax: frame 0 present: log(1 + e^(0.2 - 1.5));
  # frame 1 present: log(1 + e^(2 + 1)); frame 2 unknown.
  expected = (np.log1p(np.exp(-1.3)) + np.log1p(np.exp(3.0))) / 2
  logits = pairs[..., 1] - pairs[..., 0]
  config = ml_collections.ConfigDict({'aus': [12]})
  loss, scalars = jax.vmap(
      lambda l, y: aunets_method.loss_fn(
          (l, {'two_way_logits': pairs}), {'au_occurrence': y}, config),
      axis_name='batch')(logits[None], labels[None])
  np.testing.assert_allclose(loss[0], expected, rtol=1e-6)
  np.testing.assert_allclose(scalars['au_loss_12'][0], expected, rtol=1e-6)
  log_softmax = jax.nn.log_softmax(pairs[:2, 0], axis=-1)
  np.testing.assert_allclose(-log_softmax[:, 1].mean(), expected, rtol=1e-6)


def test_config_variant_sets_fusion_flow_and_frozen_together():
  # pylint: disable=g-import-not-at-top
  config = aunets_config.get_config('paper-pi_fc6')
  assert (config.model.fusion, config.flow) == ('pi_fc6', True)
  assert config.one_model_per == ('au',)
  assert (config.adam_b1, config.adam_b2, config.learning_rate,
          config.lr_schedule) == (0.5, 0.999, 1e-4, 'linear')
  config.aus = (12,)  # One run = one AU.
  params = _abstract(models.create(config), 224)
  mults = optim.learning_rate_multipliers(config, params)
  learnable = sum(int(np.prod(p.shape)) for p, m in zip(
      jax.tree.leaves(params), jax.tree.leaves(mults)) if m)
  assert learnable == 151_045_954  # Table 3: 151m.
  rgb = aunets_config.get_config('test')
  assert (rgb.model.fusion, rgb.flow, rgb.frozen) == ('rgb', False, '')
  with pytest.raises(ValueError, match="unknown variant 'paper-late'"):
    aunets_config.get_config('paper-late')
