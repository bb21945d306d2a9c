"""ResNet-18/34/50 trunks (He, Zhang, Ren & Sun, CVPR 2016), linen, NHWC.

LP-Net (../shared/papers/lpnet_cvpr2019.txt, section 3.1 and table 3) uses
ResNet-34 as its stem and compares ResNet-18 and ResNet-50; this file holds
the trunk for any model that needs one and an ImageNet-style `Model`
(global average pool + Dense 'output') for classification pretraining.

Layout and arithmetic follow the torchvision definitions, so torchvision's
ImageNet weights load and compute the same function (au_jax/weights.py;
tests/test_weights_torchvision.py checks the trunk against a float64 numpy
forward pass of torchvision's):
  * v1.5 bottleneck: the stride sits on the 3x3 conv;
  * every 3x3 conv pads 1 pixel on both sides, the 7x7/2 stem conv 3, the
    3x3/2 max-pool 1 (with -inf: `nn.max_pool` pads with the reduction's
    initial value, as PyTorch's max-pool ignores its padding); flax's
    'SAME' would pad a stride-2 conv of an even-sized map 0 before and 1
    after, shifting every sample by one pixel against torchvision's grid;
  * parameter counts without the classifier: ResNet-18 11,176,512;
    ResNet-34 21,284,672; ResNet-50 23,508,032 (tests/test_resnet.py);
  * batch-norm: torchvision's momentum 0.1 (flax momentum 0.9) and epsilon
    1e-5; convolutions He-normal fan-out initialised as torchvision's.

Deviation (named): `width` scales every channel count (64 = the standard
network); CPU and test configs use a narrower trunk.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# depth -> (blocks per stage, block type).
DEPTHS = {
    18: ((2, 2, 2, 2), 'basic'),
    34: ((3, 4, 6, 3), 'basic'),
    50: ((3, 4, 6, 3), 'bottleneck'),
}
_BOTTLENECK_EXPANSION = 4
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# torchvision's padding of a 3x3 conv at any stride (module docstring).
_PAD_3X3 = ((1, 1), (1, 1))


def output_channels(depth: int, width: int = 64) -> int:
  """Channels of the last stage's feature map (512 for ResNet-18/34)."""
  _, block = _depth_spec(depth)
  return width * 8 * (_BOTTLENECK_EXPANSION if block == 'bottleneck' else 1)


def _depth_spec(depth: int) -> tuple[tuple[int, ...], str]:
  if depth not in DEPTHS:
    raise ValueError(f'ResNet depth {depth!r} is not one of {sorted(DEPTHS)}.')
  return DEPTHS[depth]


class BasicBlock(nn.Module):
  """Two 3x3 convs + identity (ResNet-18/34)."""
  features: int
  strides: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    residual = x
    y = self.conv(self.features, (3, 3), (self.strides, self.strides),
                  padding=_PAD_3X3, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.features, (3, 3), padding=_PAD_3X3, name='conv2')(y)
    y = self.norm(name='bn2')(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features, (1, 1), (self.strides, self.strides),
                           name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(y + residual)


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided, torchvision v1.5), 1x1 expand x4 (ResNet-50)."""
  features: int
  strides: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    residual = x
    y = nn.relu(self.norm(name='bn1')(
        self.conv(self.features, (1, 1), name='conv1')(x)))
    y = self.conv(self.features, (3, 3), (self.strides, self.strides),
                  padding=_PAD_3X3, name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.features * _BOTTLENECK_EXPANSION, (1, 1),
                  name='conv3')(y)
    y = self.norm(name='bn3')(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features * _BOTTLENECK_EXPANSION, (1, 1),
                           (self.strides, self.strides),
                           name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """ResNet up to and including its last convolutional stage (no pooling).

  Attributes:
    depth: 18, 34 or 50.
    width: channels of the first stage (64 = standard; smaller for CPU).
    axis_name: pmap axis for cross-device batch-norm statistics.
    dtype: compute dtype; parameters stay float32.
  """
  depth: int = 34
  width: int = 64
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    """x: [B, H, W, 3] -> feature map [B, ceil(H/32), ceil(W/32), C_out].

    C_out = output_channels(depth, width): 8 * width (basic blocks) or
    32 * width (bottleneck).
    """
    stage_sizes, block_type = _depth_spec(self.depth)
    block_cls = BasicBlock if block_type == 'basic' else BottleneckBlock
    # 1x1 convs (and strided 1x1 projections) pad nothing; 3x3 and 7x7
    # convs name their padding where they are built.
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             padding='VALID', kernel_init=_conv_init)
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9,
        epsilon=1e-5, axis_name=self.axis_name, dtype=self.dtype)
    x = x.astype(self.dtype)
    # torchvision pads the 7x7/2 conv by 3 and the 3x3/2 max-pool by 1
    # (with -inf) on both sides.
    x = conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)),
             name='conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(stage_sizes):
      for index in range(num_blocks):
        strides = 2 if stage > 0 and index == 0 else 1
        x = block_cls(self.width * 2**stage, strides, conv=conv, norm=norm,
                      name=f'layer{stage + 1}_{index}')(x)
    return x


class Model(nn.Module):
  """ImageNet-style classifier: ResNet -> global average pool -> 'output'.

  For classification pretraining (method 'classify', e.g. face identity);
  `num_aus` is the output width (the number of classes there).

  Attributes:
    num_aus: outputs.
    depth, width: the trunk (see ResNet).
    axis_name: pmap axis for cross-device batch-norm statistics.
    dtype: compute dtype; parameters and returned logits stay float32.
  """
  num_aus: int
  depth: int = 34
  width: int = 64
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """batch['image']: [B, H, W, 3] -> (logits [B, num_aus],
    {'features': pooled [B, C_out]})."""
    image = batch['image']
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(
          f"ResNet expects batch['image'] of shape [B, H, W, 3], got "
          f'{image.shape}.')
    x = ResNet(self.depth, self.width, self.axis_name, self.dtype,
               name='stem')(image, train)
    features = x.mean(axis=(1, 2))
    logits = nn.Dense(self.num_aus, dtype=self.dtype, name='output')(features)
    return logits.astype(jnp.float32), {
        'features': features.astype(jnp.float32)}
