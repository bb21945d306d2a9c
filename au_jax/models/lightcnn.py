"""LightCNN trunk with max-feature-map (MFM) activations.

Wu, He, Sun, "A Light CNN for Deep Face Representation with Noisy Labels"
(the 4-layer model), as used by IdenNet (../shared/papers/idennet_poster.txt,
"Network architecture"; exact layers in ../shared/reference/architectures.md,
IdenNet section):

  conv1 9x9x96  -> max-pool 2x2/2 -> MFM -> 48 channels
  conv2 5x5x192 -> max-pool 2x2/2 -> MFM -> 96
  conv3 5x5x256 -> max-pool 2x2/2 -> MFM -> 128
  conv4 4x4x384 -> max-pool 2x2/2 -> MFM -> 192

MFM (max-feature-map): split the channels into two halves and keep the
elementwise maximum, a competitive activation that halves the width. It
commutes with max-pooling (both are maxima), so pool-then-MFM equals
MFM-then-pool exactly.

Convolutions are VALID (the Caffe prototxt has no padding). Caffe's pooling
rounds the output size up (a partial window at the right/bottom edge);
flax's rounds down. `ceil_pool=True` (default, faithful) pads the odd edge
with -inf so the partial window counts: at 128x128 the last map is 5x5x192
(= 4,800 inputs to fc5/fc6) instead of 4x4x192 (3,072).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# (kernel size, output channels before MFM) of conv1-conv4.
LIGHTCNN4_LAYERS = ((9, 96), (5, 192), (5, 256), (4, 384))
# Rec. 601 luma, for the authors' optional grayscale input.
_LUMA = (0.299, 0.587, 0.114)


def max_feature_map(x: Array) -> Array:
  """MFM over the last axis: [..., 2K] -> [..., K], max of the two halves."""
  channels = x.shape[-1]
  if channels % 2:
    raise ValueError(f'max_feature_map needs an even channel count, got '
                     f'{channels} (shape {x.shape}).')
  first, second = jnp.split(x, 2, axis=-1)
  return jnp.maximum(first, second)


def max_pool_2x2(x: Array, ceil_mode: bool = True) -> Array:
  """2x2 stride-2 max-pool of [B, H, W, C].

  ceil_mode: output ceil(H / 2) x ceil(W / 2), Caffe's rounding (an odd
  last row/column is pooled alone); False: floor, flax's `nn.max_pool`.
  """
  if ceil_mode:
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
      # -inf padding never wins the max, so a partial window pools only the
      # real pixels, as Caffe does.
      x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)),
                  constant_values=-jnp.inf)
  return nn.max_pool(x, (2, 2), strides=(2, 2))


def trunk_output_size(size: int, ceil_pool: bool = True) -> int:
  """Side of the conv4 map (after its pool) for a square input `size`."""
  for kernel, _ in LIGHTCNN4_LAYERS:
    size = size - kernel + 1
    if size < 1:
      break
    size = -(-size // 2) if ceil_pool else size // 2
  return max(size, 0)


class LightCNN4(nn.Module):
  """The 4-conv LightCNN trunk; returns the flattened conv4 map.

  Attributes:
    ceil_pool: Caffe's ceil rounding in the max-pools (see module doc).
    grayscale: convert RGB input to one luma channel first (the authors'
      option; the reference parameter counts assume it).
    dtype: compute dtype; parameters stay float32.
  """
  ceil_pool: bool = True
  grayscale: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array) -> Array:
    """image: [B, H, W, 3] -> features [B, S * S * 192] (S: trunk_output_size)."""
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(
          f'LightCNN expects images [B, H, W, 3], got shape {image.shape}.')
    if image.shape[1] != image.shape[2]:
      raise ValueError(f'LightCNN expects square images, got {image.shape}.')
    if trunk_output_size(image.shape[1], self.ceil_pool) < 1:
      smallest = next(s for s in range(1, 512)
                      if trunk_output_size(s, self.ceil_pool) >= 1)
      raise ValueError(
          f'Input side {image.shape[1]} is too small for LightCNN-4 '
          f'(ceil_pool={self.ceil_pool}): the conv stack leaves no pixels; '
          f'use at least {smallest}.')
    x = image.astype(self.dtype)
    if self.grayscale:
      x = x @ jnp.asarray(_LUMA, self.dtype)[:, None]
    conv = functools.partial(nn.Conv, padding='VALID', dtype=self.dtype)
    for index, (kernel, features) in enumerate(LIGHTCNN4_LAYERS, start=1):
      x = conv(features, (kernel, kernel), name=f'conv{index}')(x)
      x = max_pool_2x2(x, self.ceil_pool)
      x = max_feature_map(x)
    return x.reshape(x.shape[0], -1)
