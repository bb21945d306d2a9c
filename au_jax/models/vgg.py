"""VGG-16/19 (Simonyan & Zisserman, ICLR 2015) as the EmoNet encoder.

Papers: ../shared/papers/caud_thesis.txt sec. 4.1 and 5.2 (EmoNet: an
ImageNet VGG-16 whose output layer is replaced by 8 emotions, fine-tuned with
SGD on multi-view emotion data) and ../shared/papers/aunets_2017.txt sec. 3.1
and table 1 (the same encoder starts every HydraNet and AUNet).

Layers (configuration D = VGG-16, E = VGG-19 of the VGG paper, table 1):
  encoder: 5 blocks of 3x3 convs (stride 1, padding 1, ReLU), 2x2/2 max-pool
           after each: 64x2, 128x2, 256x3, 512x3, 512x3 (VGG-19: 2,2,4,4,4)
  -> flatten pool5 (7x7x512 at 224x224 = 25,088)
  -> fc6 4096 ReLU dropout 0.5 -> fc7 4096 ReLU dropout 0.5 -> output.
Parameters: VGG-16 with 1000 classes 138,357,544; VGG-19 143,667,240;
VGG-16 with an 8-emotion output 134,293,320; a binary 2-way AU output
134,268,738 (AUNets table 3: "134m").

Named deviations:
  * `width_multiplier`: multiplies every conv and FC width (1.0 = the
    paper). CPU and test variants use narrow networks (e.g. 0.125) so a step
    takes milliseconds; such a network cannot load ImageNet weights.
  * Flatten order: pool5 is flattened in HWC order (flax) instead of Caffe's
    and PyTorch's CHW; au_jax/weights.py permutes fc6's rows when it loads
    ImageNet weights, so converted networks compute the same function.
  * Initialisation when training from scratch: torchvision's (He-normal
    fan-out for convs, N(0, 0.01) for dense kernels, zero biases); the VGG
    paper initialised deeper nets from shallower ones. `fc_init='he'`
    (CPU variants) draws fc6/fc7 He-normal over fan-in and the output
    LeCun-normal instead: N(0, 0.01) suits fc6's 25,088 inputs at full
    size, but a narrow net's 256-input fc6 and 512-input fc7 then shrink
    the signal ~10x per layer (pool5 std 0.50 -> fc7 0.018 -> logits
    0.002 at width 1/8, 64 px), so conv1's gradient is ~100x smaller than
    fc6's and SGD fits only the FC layers on random conv features: the
    CPU EmoNet sat at its class prior (configs/emonet.py).
  * `two_way_output`: AUNets' binary output is a 2-way softmax per AU
    (reference/architectures.md). With it the 'output' Dense has 2 units per
    AU and the returned logit is z_present - z_absent, since
    softmax([z0, z1])[1] = sigmoid(z1 - z0): sigmoid cross-entropy on the
    returned logit is exactly the 2-way softmax cross-entropy, so the
    shared multi-label loss and metrics apply unchanged.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from au_jax.models import layers

Array = jax.Array

# Convolutions per block (VGG paper table 1, configurations D and E).
BLOCKS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
FC_WIDTH = 4096

conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
dense_init = nn.initializers.normal(0.01)
# fc_init: {name: (fc6/fc7 kernel init, output kernel init)}.
FC_INITS = {
    'torchvision': (dense_init, dense_init),
    'he': (nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'),
           nn.initializers.lecun_normal()),
}


def fc_inits(name: str):
  """(hidden FC init, output init) of `fc_init` name (module docstring)."""
  if name not in FC_INITS:
    raise ValueError(f'fc_init={name!r}: expected one of {sorted(FC_INITS)}.')
  return FC_INITS[name]


def scaled(channels: int, width_multiplier: float) -> int:
  """A layer's width under the width multiplier (at least 1)."""
  return max(1, int(round(channels * width_multiplier)))


def conv_names(depth: int = 16) -> list[str]:
  """Encoder conv names in order: ['conv1_1', 'conv1_2', ..., 'conv5_3']."""
  if depth not in BLOCKS:
    raise ValueError(f'VGG depth {depth}: expected one of {sorted(BLOCKS)}.')
  return [f'conv{block + 1}_{index + 1}'
          for block, count in enumerate(BLOCKS[depth])
          for index in range(count)]


class Encoder(nn.Module):
  """VGG convolutional encoder: conv1_1 ... conv5_3 with 5 max-pools.

  Attributes:
    depth: 16 or 19.
    width_multiplier: multiplier on every block width (1.0 = VGG).
    dtype: compute dtype.
  """
  depth: int = 16
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """x: [B, H, W, C_in] -> pool5 [B, H/32, W/32, 512 * width_multiplier]."""
    if self.depth not in BLOCKS:
      raise ValueError(
          f'VGG depth {self.depth}: expected one of {sorted(BLOCKS)}.')
    x = x.astype(self.dtype)
    for block, count in enumerate(BLOCKS[self.depth]):
      for index in range(count):
        x = nn.Conv(scaled(BLOCK_WIDTHS[block], self.width_multiplier), (3, 3),
                    padding=1, dtype=self.dtype, kernel_init=conv_init,
                    name=f'conv{block + 1}_{index + 1}')(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return x


def fc_layer(features: int, name: str, dtype: Any,
             fc_init: str = 'torchvision') -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=fc_inits(fc_init)[0],
                  name=name)


def output_layer(num_outputs: int, two_way: bool, dtype: Any,
                 name: str = 'output',
                 fc_init: str = 'torchvision') -> nn.Dense:
  """The classifier Dense: C units, or 2 per output with `two_way`."""
  return nn.Dense(num_outputs * (2 if two_way else 1), dtype=dtype,
                  kernel_init=fc_inits(fc_init)[1], name=name)


def split_output(z: Array, num_outputs: int,
                 two_way: bool) -> tuple[Array, dict[str, Array]]:
  """Output Dense activations -> (logits [B, C] float32, extra aux).

  With `two_way`, z: [B, 2C] holds (absent, present) scores per output and
  the logit is present - absent (module docstring); aux gets
  'two_way_logits' [B, C, 2].
  """
  z = z.astype(jnp.float32)
  if not two_way:
    return z, {}
  pairs = z.reshape(z.shape[0], num_outputs, 2)
  return pairs[..., 1] - pairs[..., 0], {'two_way_logits': pairs}


class Model(nn.Module):
  """VGG classifier: EmoNet (num_aus = 8 emotions) or a binary AU detector.

  Attributes:
    num_aus: output width (number of AUs, or classes in a classify run).
    depth: 16 (the papers) or 19.
    width_multiplier: multiplier on conv and FC widths (1.0 = paper; named
      deviation).
    fc_width: fc6/fc7 units before `width_multiplier` (thesis table 4: 4096
      best of 4096, 2048, 1024).
    dropout_rate: after fc6 and fc7 (VGG: 0.5).
    two_way_output: 2-way softmax per output (AUNets' binary output); the
      returned logit is the score difference (module docstring).
    fc_init: 'torchvision' (N(0, 0.01), the default) or 'he' for narrow
      nets trained from scratch (module docstring).
    axis_name: accepted for the model contract; VGG has no batch-norm.
    dtype: compute dtype; parameters and returned arrays stay float32.
  """
  num_aus: int
  depth: int = 16
  width_multiplier: float = 1.0
  fc_width: int = FC_WIDTH
  dropout_rate: float = 0.5
  two_way_output: bool = False
  fc_init: str = 'torchvision'
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """batch['image']: [B, H, W, 3] float32 normalised (224x224 in the papers).

    Returns (logits [B, num_aus] float32, aux) with aux['features'] the fc7
    output [B, fc_width * width_multiplier] and, with two_way_output,
    'two_way_logits'.
    """
    x = batch['image']
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(
          f"VGG expects batch['image'] of shape [B, H, W, 3], got {x.shape}.")
    x = Encoder(self.depth, self.width_multiplier, self.dtype,
                name='encoder')(x)
    features = fully_connected(self, x.reshape(x.shape[0], -1), train)
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(features)
    z = output_layer(self.num_aus, self.two_way_output, self.dtype,
                     fc_init=self.fc_init)(x)
    logits, aux = split_output(z, self.num_aus, self.two_way_output)
    aux['features'] = features.astype(jnp.float32)
    return logits, aux


def fully_connected(module: nn.Module, x: Array, train: bool,
                    names: tuple[str, ...] = ('fc6', 'fc7')) -> Array:
  """VGG's FC layers (ReLU; dropout between them), built inside `module`.

  Call from a compact `__call__` (the layers attach to `module`, which needs
  the fields width_multiplier, fc_width, dropout_rate and dtype, and
  optionally fc_init). Two-stream
  AUNets build their motion stream with names ('motion_fc6', ...) and a
  fused fc7 with names ('fc7',).

  Args:
    x: [B, F] input of the first named layer.

  Returns:
    The last layer's output after ReLU, before its dropout:
    [B, fc_width * width_multiplier].
  """
  units = scaled(module.fc_width, module.width_multiplier)
  for index, name in enumerate(names):
    if index:
      x = layers.Dropout(module.dropout_rate, deterministic=not train)(x)
    x = nn.relu(fc_layer(units, name, module.dtype,
                         getattr(module, 'fc_init', 'torchvision'))(x))
  return x


def check_shapes(mapped: Any, target: Any) -> None:
  """Raises a ValueError naming each leaf of `mapped` that `target` lacks or
  holds with another shape (init_from adapters' check)."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(mapped):
    node = target
    for key in path:
      if key.key not in node:
        raise ValueError(f'init_from: {jax.tree_util.keystr(path)} is not a '
                         'parameter of this model.')
      node = node[key.key]
    if tuple(node.shape) != tuple(jnp.shape(leaf)):
      raise ValueError(
          f'init_from: {jax.tree_util.keystr(path)} has shape '
          f'{tuple(jnp.shape(leaf))} in the source, {tuple(node.shape)} in '
          'this model.')
