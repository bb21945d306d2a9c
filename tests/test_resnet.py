"""ResNet trunks: torchvision parameter counts, output shapes, classifier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax.models import resnet


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _abstract_variables(module, *args):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *args))


def _formula_count(depth: int, width: int) -> int:
  """Parameters of a ResNet trunk, counted from the architecture by hand:
  convs without bias, 2 batch-norm parameters per channel."""
  stage_sizes, block = resnet.DEPTHS[depth]
  total = 7 * 7 * 3 * width + 2 * width  # conv1 + bn1
  channels = width
  for stage, blocks in enumerate(stage_sizes):
    c = width * 2**stage
    for index in range(blocks):
      if block == 'basic':
        out = c
        total += 9 * channels * c + 2 * c + 9 * c * c + 2 * c
      else:
        out = 4 * c
        total += (channels * c + 2 * c + 9 * c * c + 2 * c
                  + c * out + 2 * out)
      if index == 0 and (stage > 0 or channels != out):
        total += channels * out + 2 * out  # 1x1 projection + bn
      channels = out
  return total


# torchvision resnet{18,34,50}(): 11,689,512 / 21,797,672 / 25,557,032
# parameters including fc (512*1000+1000 = 513,000; 2048*1000+1000).
@pytest.mark.parametrize('depth,expected', [
    (18, 11_689_512 - 513_000),
    (34, 21_284_672),
    (50, 25_557_032 - 2_049_000)])
def test_parameter_counts_equal_torchvision_without_classifier(depth,
                                                               expected):
  variables = _abstract_variables(resnet.ResNet(depth=depth),
                                  jnp.zeros((1, 224, 224, 3)), False)
  assert _count(variables['params']) == expected
  assert _formula_count(depth, 64) == expected


@pytest.mark.parametrize('depth', [18, 34, 50])
def test_width_multiplier_scales_every_layer(depth):
  variables = _abstract_variables(resnet.ResNet(depth=depth, width=16),
                                  jnp.zeros((1, 64, 64, 3)), False)
  assert _count(variables['params']) == _formula_count(depth, 16)


@pytest.mark.parametrize('size,grid', [((224, 224), (7, 7)),
                                       ((96, 96), (3, 3)),
                                       ((100, 75), (4, 3)),
                                       ((64, 64), (2, 2))])
def test_feature_map_is_input_over_32_rounded_up(size, grid):
  module = resnet.ResNet(depth=34, width=8)
  x = jnp.zeros((2,) + size + (3,))
  out = jax.eval_shape(lambda: module.init_with_output(
      jax.random.key(0), x, False)[0])
  assert out.shape == (2,) + grid + (resnet.output_channels(34, 8),)
  assert resnet.output_channels(50, 8) == 256


def test_classifier_model_trains_batch_norm_and_names_output():
  model = resnet.Model(num_aus=5, depth=18, width=4)
  batch = {'image': jax.random.normal(jax.random.key(1), (3, 32, 32, 3))}
  variables = jax.jit(model.init, static_argnums=2)(
      jax.random.key(0), batch, False)
  assert set(variables['params']) == {'stem', 'output'}
  assert variables['params']['output']['kernel'].shape == (32, 5)
  (logits, aux), updates = jax.jit(
      lambda v, b: model.apply(v, b, True, mutable=['batch_stats']))(
          variables, batch)
  assert logits.shape == (3, 5) and logits.dtype == jnp.float32
  assert aux['features'].shape == (3, 32)
  assert np.all(np.isfinite(logits))
  # Training mode moved the running statistics away from their init.
  before = variables['batch_stats']['stem']['bn1']['mean']
  after = updates['batch_stats']['stem']['bn1']['mean']
  assert float(jnp.max(jnp.abs(after - before))) > 0


def test_unknown_depth_is_a_clear_error():
  with pytest.raises(ValueError, match='depth 101'):
    resnet.output_channels(101)
