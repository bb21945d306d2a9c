"""Tests for au_jax.models.layers: region layer and Caffe LRN."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax.models import layers
from au_jax.models import drml

jax.config.update('jax_disable_most_optimizations', True)

# Small shapes: a 40x40 map (conv1 of a 50x50 input) cut into 8x8 patches of
# 5x5, and a non-square 4x2 grid (10x20 patches) to catch transposed axes.
SHAPE = (2, 40, 40, 4)


def _init(layer, x, seed=0):
  variables = layer.init(jax.random.key(seed), x, train=False)
  # Non-zero bias so a wrong bias layout shows up.
  bias = jax.random.normal(jax.random.key(seed + 1),
                           variables['params']['bias'].shape)
  params = dict(variables['params'], bias=bias)
  return {'params': params, 'batch_stats': variables['batch_stats']}


def _apply_train(layer, variables, x):
  return layer.apply(variables, x, train=True, mutable=['batch_stats'])


def _numpy_region_layer(x, kernel, bias, grid, epsilon=1e-5):
  """Independent reference: explicit loops over patches and the 3x3 taps."""
  b, h, w, c = x.shape
  gh, gw = grid
  ph, pw = h // gh, w // gw
  out = np.zeros_like(x)
  means = np.zeros((gh, gw, c))
  for i in range(gh):
    for j in range(gw):
      patch = x[:, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw]
      mean = patch.mean(axis=(0, 1, 2))
      var = patch.var(axis=(0, 1, 2))
      means[i, j] = mean
      act = np.maximum((patch - mean) / np.sqrt(var + epsilon), 0)
      padded = np.pad(act, ((0, 0), (1, 1), (1, 1), (0, 0)))
      conv = np.zeros((b, ph, pw, c)) + bias[i, j]
      for dy in range(3):
        for dx in range(3):
          conv += padded[:, dy:dy + ph, dx:dx + pw] @ kernel[i, j, dy, dx]
      out[:, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] = conv
  return np.maximum(out + x, 0), means


@pytest.mark.parametrize('grid', [(8, 8), (4, 2)])
@pytest.mark.parametrize('implementation', layers.IMPLEMENTATIONS)
def test_region_layer_matches_numpy_reference(implementation, grid):
  x = jax.random.normal(jax.random.key(3), SHAPE)
  layer = layers.RegionLayer(grid=grid, implementation=implementation)
  variables = _init(layer, x)
  out, updates = _apply_train(layer, variables, x)
  params = jax.tree.map(np.asarray, variables['params'])
  expected, means = _numpy_region_layer(
      np.asarray(x, np.float64), params['kernel'], params['bias'], grid)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
  # Running mean starts at 0: new = momentum * 0 + (1 - momentum) * mean.
  np.testing.assert_allclose(
      updates['batch_stats']['patch_norm']['mean'], 0.01 * means,
      rtol=1e-4, atol=1e-6)


def test_implementations_agree_forward_and_gradients():
  x = jax.random.normal(jax.random.key(4), SHAPE)
  cotangent = jax.random.normal(jax.random.key(5), SHAPE)
  results = {}
  for implementation in ('auto',) + layers.IMPLEMENTATIONS:
    layer = layers.RegionLayer(grid=(4, 2), implementation=implementation)
    variables = _init(layer, x)  # same seed: same parameters for all

    def forward(params, x):
      out, _ = _apply_train(
          layer, {'params': params,
                  'batch_stats': variables['batch_stats']}, x)
      return out
    out, vjp = jax.vjp(forward, variables['params'], x)
    results[implementation] = (out, vjp(cotangent))
  reference = jax.tree.leaves(results['unrolled'])
  assert len(reference) == 4  # output, kernel, bias and input gradients
  for implementation, result in results.items():
    for got, want in zip(jax.tree.leaves(result), reference):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4,
                                 err_msg=implementation)


def test_auto_implementation_resolves_by_backend():
  # Measured choices (layers.py comment, the H100 table).
  assert layers.resolve_implementation('auto', 'gpu') == 'grouped'
  assert layers.resolve_implementation('auto', 'cuda') == 'grouped'
  assert layers.resolve_implementation('auto', 'cpu') == 'unrolled'
  assert layers.resolve_implementation('auto') == (
      'grouped' if jax.default_backend() == 'gpu' else 'unrolled')
  assert layers.resolve_implementation('einsum', 'gpu') == 'einsum'
  with pytest.raises(ValueError, match="'vmap'"):
    layers.resolve_implementation('vmap')


def test_compute_dtype_names():
  assert layers.canonical_dtype('bfloat16') == jnp.bfloat16
  assert layers.canonical_dtype(jnp.float32) == jnp.float32
  for bad in ('int8', 'bf16'):
    with pytest.raises(ValueError, match=bad):
      layers.canonical_dtype(bad)


def test_drml_mixed_precision_keeps_parameters_statistics_and_logits_float32():
  batch = {'image': jax.random.normal(jax.random.key(0), (2, 66, 66, 3))}
  full = drml.Model(num_aus=3, region_grid=(2, 2), dropout_rate=0.0,
                    region_implementation='einsum')
  half = full.clone(dtype='bfloat16')  # a config string is accepted
  variables = jax.jit(functools.partial(half.init, train=False))(
      jax.random.key(1), batch)
  for leaf in jax.tree.leaves(variables):
    assert leaf.dtype == jnp.float32  # parameters and BN statistics

  # Forward in train mode only: gradients w.r.t. float32 parameters are
  # float32 whatever the compute dtype, and the loss sees float32 logits.
  @functools.partial(jax.jit, static_argnums=0)
  def forward(model):
    return model.apply(variables, batch, train=True, mutable=['batch_stats'])
  results = {}
  for name, model in (('float32', full), ('bfloat16', half)):
    (logits, aux), updates = forward(model)
    results[name] = logits
    for leaf in jax.tree.leaves((logits, aux, updates)):
      assert leaf.dtype == jnp.float32, (name, leaf.dtype)
  # Same parameters: bfloat16 logits within bfloat16 rounding of float32.
  scale = float(jnp.max(jnp.abs(results['float32'])))
  np.testing.assert_allclose(results['bfloat16'], results['float32'],
                             atol=0.05 * scale)
  assert not np.array_equal(results['bfloat16'], results['float32'])


@pytest.mark.parametrize('implementation', layers.IMPLEMENTATIONS)
def test_perturbation_stays_inside_its_patch(implementation):
  x = jax.random.normal(jax.random.key(6), SHAPE)
  layer = layers.RegionLayer(grid=(8, 8), implementation=implementation)
  variables = _init(layer, x)
  # Patch (row 2, col 5) covers rows 10:15, cols 25:30. Perturb its corner
  # pixel, which a plain 3x3 conv would spread into neighbouring patches.
  perturbed = x.at[:, 10, 29, :].add(5.0)
  before, _ = _apply_train(layer, variables, x)
  after, _ = _apply_train(layer, variables, perturbed)
  changed = np.abs(np.asarray(after - before)).max(axis=(0, 3)) > 1e-6
  inside = np.zeros((40, 40), bool)
  inside[10:15, 25:30] = True
  assert not changed[~inside].any(), np.argwhere(changed & ~inside)
  assert changed[inside].sum() > 5  # batch statistics move the whole patch


def test_zero_conv_weights_give_relu_of_input():
  x = jax.random.normal(jax.random.key(7), SHAPE)
  layer = layers.RegionLayer(grid=(8, 8))
  variables = layer.init(jax.random.key(0), x, train=False)
  zeros = jax.tree.map(jnp.zeros_like, variables['params'])
  out, _ = _apply_train(
      layer, {'params': zeros, 'batch_stats': variables['batch_stats']}, x)
  np.testing.assert_array_equal(out, jax.nn.relu(x))


def test_patch_norm_has_no_scale_or_shift_unless_affine():
  x = jnp.zeros(SHAPE)
  plain = layers.RegionLayer().init(jax.random.key(0), x, train=False)
  affine = layers.RegionLayer(affine_norm=True).init(
      jax.random.key(0), x, train=False)
  assert set(plain['params']) == {'kernel', 'bias'}
  assert plain['params']['kernel'].shape == (8, 8, 3, 3, 4, 4)
  assert plain['params']['bias'].shape == (8, 8, 4)
  assert affine['params']['patch_norm']['scale'].shape == (8, 8, 4)
  assert affine['params']['patch_norm']['bias'].shape == (8, 8, 4)
  assert plain['batch_stats']['patch_norm']['var'].shape == (8, 8, 4)


def test_statistics_synchronised_over_axis_name():
  x = jax.random.normal(jax.random.key(8), SHAPE)
  synced = layers.RegionLayer(axis_name='batch')
  local = layers.RegionLayer()
  variables = _init(local, x)
  whole, whole_updates = _apply_train(local, variables, x)
  # Two halves of the batch on a named vmap axis (as under pmap).
  split, split_updates = jax.vmap(
      lambda xs: _apply_train(synced, variables, xs), axis_name='batch')(
          x.reshape(2, 1, *SHAPE[1:]))
  np.testing.assert_allclose(split.reshape(SHAPE), whole, atol=1e-5)
  np.testing.assert_allclose(
      split_updates['batch_stats']['patch_norm']['mean'][0],
      whole_updates['batch_stats']['patch_norm']['mean'], atol=1e-6)


def test_indivisible_shape_names_shapes():
  x = jnp.zeros((1, 42, 40, 4))
  with pytest.raises(ValueError, match=r'42x40.*8x8'):
    layers.RegionLayer(grid=(8, 8)).init(jax.random.key(0), x, train=False)


def test_unknown_implementation():
  with pytest.raises(ValueError, match='vmap'):
    layers.RegionLayer(implementation='vmap').init(
        jax.random.key(0), jnp.zeros(SHAPE), train=False)


def test_local_response_norm_hand_computed():
  # All-ones input, 7 channels, alpha = 1 to make the effect visible: channel
  # c sees the channels in [c - 2, c + 2] that exist: 3, 4, 5, 5, 5, 4, 3.
  x = jnp.ones((1, 1, 1, 7))
  out = layers.LocalResponseNorm(alpha=1.0).apply({}, x)
  counts = np.array([3, 4, 5, 5, 5, 4, 3])
  np.testing.assert_allclose(out[0, 0, 0], (1 + counts / 5) ** -0.75,
                             rtol=1e-6)


def test_local_response_norm_in_bfloat16_sums_in_float32():
  x = jnp.zeros((1, 6)).at[0, 2].set(10.0)
  out = layers.local_response_norm(x.astype(jnp.bfloat16))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             layers.local_response_norm(x), rtol=1e-2)


def test_local_response_norm_caffe_defaults():
  # One active channel of value 10: (1 + 1e-4 / 5 * 100) ** -0.75 * 10, and
  # channels within 2 of it are divided by the same factor.
  x = jnp.zeros((1, 6)).at[0, 2].set(10.0).at[0, 4].set(1.0)
  out = np.asarray(layers.local_response_norm(x))
  factor = 1 + 1e-4 / 5 * 100
  np.testing.assert_allclose(out[0, 2], 10 * (factor + 2e-5) ** -0.75,
                             rtol=1e-6)
  np.testing.assert_allclose(out[0, 4], (factor + 2e-5) ** -0.75, rtol=1e-6)
  np.testing.assert_allclose(out[0, [0, 1, 3, 5]], 0)
