"""Tests for au_jax.models.create and the DRML model."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax import models
from au_jax.models import drml

jax.config.update('jax_disable_most_optimizations', True)

# Smallest input the layer table accepts with an 8x8 grid: conv1 56x56
# (7x7 patches), pool 28, conv4 21, conv5 14, conv6 5, conv7 1x1x16.
SMALL = 66


def _config(**model):
  return ml_collections.ConfigDict({
      'model_name': 'drml', 'aus': [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24],
      'model': model})


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _abstract_variables(model, size=170):
  batch = {'image': jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)}
  return jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False), batch)


def test_parameter_count_matches_authors_table():
  # conv1 11,648 + region 64 * 9,248 + conv4..7 64,832 + fc8 47,779,840
  # + fc9 8,390,656 + output 24,588.
  variables = _abstract_variables(models.create(_config()))
  assert _count(variables['params']) == 56_863_436
  affine = _abstract_variables(models.create(_config(affine_patch_norm=True)))
  assert _count(affine['params']) == 56_863_436 + 4_096
  no_lrn = _abstract_variables(models.create(_config(use_lrn=False)))
  assert _count(no_lrn['params']) == 56_863_436 + 2 * 32


def test_stage_shapes_at_170():
  model = models.create(_config())
  batch = {'image': jax.ShapeDtypeStruct((2, 170, 170, 3), jnp.float32)}
  variables = _abstract_variables(model)
  (logits, aux), state = jax.eval_shape(
      lambda v, b: model.apply(v, b, train=False,
                               capture_intermediates=True,
                               mutable=['intermediates']), variables, batch)
  shapes = {name: value['__call__'][0].shape
            for name, value in state['intermediates'].items()
            if name != '__call__'}
  assert shapes == {
      'conv1': (2, 160, 160, 32), 'region2': (2, 160, 160, 32),
      'pool3_lrn': (2, 80, 80, 32), 'conv4': (2, 73, 73, 16),
      'conv5': (2, 66, 66, 16), 'conv6': (2, 31, 31, 16),
      'conv7': (2, 27, 27, 16), 'fc8': (2, 4096), 'fc9': (2, 2048),
      'output': (2, 12), 'Dropout_0': (2, 4096), 'Dropout_1': (2, 2048)}
  assert variables['params']['fc8']['kernel'].shape == (27 * 27 * 16, 4096)
  assert logits.shape == (2, 12) and logits.dtype == jnp.float32
  assert aux['features'].shape == (2, 2048)


@pytest.fixture(scope='module')
def small_model_and_variables():
  model = models.create(_config())
  batch = {'image': jax.random.normal(jax.random.key(1), (4, SMALL, SMALL, 3))}
  variables = model.init(jax.random.key(0), batch, train=False)
  return model, variables, batch


def test_eval_is_deterministic(small_model_and_variables):
  model, variables, batch = small_model_and_variables
  first, aux = model.apply(variables, batch, train=False)
  second, _ = model.apply(variables, batch, train=False)
  np.testing.assert_array_equal(first, second)
  assert first.shape == (4, 12) and aux['features'].shape == (4, 2048)
  assert np.isfinite(first).all()


def test_train_uses_dropout_and_updates_batch_stats(small_model_and_variables):
  model, variables, batch = small_model_and_variables

  def train_apply(seed):
    return model.apply(variables, batch, train=True,
                       rngs={'dropout': jax.random.key(seed)},
                       mutable=['batch_stats'])
  (logits_a, _), updates = train_apply(0)
  (logits_b, _), _ = train_apply(1)
  assert not np.allclose(logits_a, logits_b)  # different dropout masks
  old = variables['batch_stats']['region2']['patch_norm']['mean']
  new = updates['batch_stats']['region2']['patch_norm']['mean']
  assert np.all(old == 0) and np.abs(new).max() > 0


def test_dropout_rate_zero_makes_train_independent_of_rng():
  model = models.create(_config(dropout_rate=0.0))
  batch = {'image': jax.random.normal(jax.random.key(2), (2, SMALL, SMALL, 3))}
  variables = model.init(jax.random.key(0), batch, train=False)
  outs = [model.apply(variables, batch, train=True,
                      rngs={'dropout': jax.random.key(seed)},
                      mutable=['batch_stats'])[0][0] for seed in (0, 1)]
  np.testing.assert_array_equal(outs[0], outs[1])


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = models.create(_config(), dtype=jnp.bfloat16)
  batch = {'image': jnp.ones((1, SMALL, SMALL, 3))}
  variables = model.init(jax.random.key(0), batch, train=False)
  assert all(leaf.dtype == jnp.float32
             for leaf in jax.tree.leaves(variables['params']))
  logits, aux = model.apply(variables, batch, train=False)
  assert logits.dtype == jnp.float32 and aux['features'].dtype == jnp.float32


def test_create_passes_config_and_overrides():
  model = models.create(_config(dropout_rate=0.3, region_grid=[4, 4]),
                        axis_name='batch')
  assert isinstance(model, drml.Model)
  assert model.num_aus == 12 and model.dropout_rate == 0.3
  assert tuple(model.region_grid) == (4, 4) and model.axis_name == 'batch'


def test_create_unknown_model_lists_models():
  config = _config()
  config.model_name = 'alexnet'
  with pytest.raises(ValueError, match=r"'alexnet'.*drml"):
    models.create(config)


def test_create_unknown_key_names_it():
  with pytest.raises(TypeError, match='dropout_prob'):
    models.create(_config(dropout_prob=0.5))
  with pytest.raises(TypeError, match='use_bn'):
    models.create(_config(), use_bn=True)


def test_bad_image_shape_is_named():
  model = models.create(_config())
  with pytest.raises(ValueError, match=r'\(2, 66, 66\)'):
    model.init(jax.random.key(0), {'image': jnp.zeros((2, 66, 66))},
               train=False)
