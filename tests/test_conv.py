"""Tests for au_jax.models.conv: channel-blocked convolution = nn.Conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax.models import conv
from au_jax.models import drml

jax.config.update('jax_disable_most_optimizations', True)


def _direct_numpy(x, kernel, stride):
  """VALID cross-correlation in float64 loops: an independent reference."""
  b, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
  out = np.zeros((b, ho, wo, cout))
  for i in range(ho):
    for j in range(wo):
      window = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
      out[:, i, j] = np.einsum('bhwc,hwco->bo', window, kernel)
  return out


@pytest.mark.parametrize('cin,cout,stride,block', [
    (3, 32, 1, 16),   # DRML conv1's channels: two output blocks.
    (32, 16, 1, 16),  # conv4's: two input blocks summed.
    (20, 37, 2, 8),   # Ragged last blocks and a stride.
    (5, 4, 1, 16),    # Smaller than one block: a single conv.
])
def test_blocked_conv_matches_float64_reference(cin, cout, stride, block):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 9, 11, cin))
  kernel = rng.standard_normal((3, 4, cin, cout))
  got = conv.blocked_conv(jnp.asarray(x, jnp.float32),
                          jnp.asarray(kernel, jnp.float32), (stride, stride),
                          'VALID', block=block)
  want = _direct_numpy(x, kernel, stride)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('padding,strides', [('SAME', (1, 1)),
                                             ('VALID', (2, 2)),
                                             (1, (1, 1)),  # VGG's form.
                                             ([(1, 2), (0, 1)], (1, 1))])
def test_conv_module_has_nn_conv_parameters_and_outputs(padding, strides):
  x = jax.random.normal(jax.random.key(0), (2, 12, 10, 24))
  reference = nn.Conv(40, (5, 3), strides=strides, padding=padding)
  params = reference.init(jax.random.key(1), x)
  want = reference.apply(params, x)
  for implementation in ('xla', 'blocked'):
    module = conv.Conv(40, (5, 3), strides=strides, padding=padding,
                       implementation=implementation)
    # Same parameter tree (names and shapes) as nn.Conv: checkpoints load.
    own = module.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, own) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(module.apply(params, x), want, rtol=1e-5,
                               atol=1e-5)


def test_conv_module_computes_in_dtype_with_float32_parameters():
  x = jnp.ones((1, 6, 6, 20))
  module = conv.Conv(18, (3, 3), dtype=jnp.bfloat16, implementation='blocked')
  params = module.init(jax.random.key(0), x)
  assert params['params']['kernel'].dtype == jnp.float32
  assert module.apply(params, x).dtype == jnp.bfloat16


def test_auto_resolves_per_backend_and_unknown_names_are_refused():
  assert conv.resolve_implementation('auto', 'cpu') == 'blocked'
  assert conv.resolve_implementation('auto', 'gpu') == 'xla'
  assert conv.resolve_implementation('xla', 'cpu') == 'xla'
  with pytest.raises(ValueError, match="'fast'"):
    conv.resolve_implementation('fast')
  with pytest.raises(ValueError, match='block must be positive'):
    conv.blocked_conv(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), block=0)
  with pytest.raises(ValueError, match='input has 3 channels'):
    conv.blocked_conv(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 2, 2)))


def test_drml_logits_do_not_depend_on_the_conv_formulation():
  batch = {'image': jax.random.normal(jax.random.key(0), (2, 66, 66, 3))}
  xla = drml.Model(num_aus=3, conv_implementation='xla')
  variables = xla.init(jax.random.key(1), batch, train=False)
  blocked = drml.Model(num_aus=3, conv_implementation='blocked')
  assert (jax.tree.map(jnp.shape, blocked.init(jax.random.key(1), batch,
                                               train=False))
          == jax.tree.map(jnp.shape, variables))
  want, _ = xla.apply(variables, batch, train=False)
  got, _ = blocked.apply(variables, batch, train=False)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
