"""DRML: Deep Region and Multi-label Learning (Zhao, Chu, Zhang, CVPR 2016).

Layer table from the authors' Caffe prototxt (shared/reference/
architectures.md) and the poster's architecture figure:

  input 170x170x3 -> conv1 11x11x32 VALID, no ReLU        160x160x32
  -> region layer (8x8 grid of 20x20 patches)             160x160x32
  -> max-pool 2x2/2 -> LRN (5, 1e-4, 0.75)                80x80x32
  -> conv4 8x8x16 -> conv5 8x8x16 -> conv6 6x6x16 /2 -> conv7 5x5x16
     (VALID, ReLU)                                 73, 66, 31, 27x27x16
  -> fc8 4096 ReLU dropout -> fc9 2048 ReLU dropout -> C logits.

With 12 AUs: 56,863,436 parameters (poster: "56M"); +4,096 with
`affine_patch_norm`. The multi-label loss (poster, L(Y, Y^)) lives in
au_jax/losses.py; this module only returns logits.

Initialisation (the prototxt's fillers are not in our reference): Caffe's
'xavier' filler for every kernel (uniform +-sqrt(3 / fan_in)) and zero
biases. Deviation: fc8 flattens conv7 in HWC order rather than Caffe's CHW;
for a model trained from scratch this is only a permutation of fc8's rows.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from au_jax.models import conv as conv_lib
from au_jax.models import layers

Array = jax.Array


class Model(nn.Module):
  """DRML network.

  Attributes:
    num_aus: number of outputs C (one sigmoid logit per AU).
    dropout_rate: dropout after fc8 and fc9 (prototxt: 0.5).
    region_grid: (gh, gw) patch grid of the region layer (paper: 8x8).
    affine_patch_norm: patch batch-norm with learned scale/shift (public
      ports' variant); False = authors' Caffe BN without scale/shift.
    use_lrn: LRN after pool3 (faithful). False = the ports' batch-norm there.
    region_implementation: per-patch conv formulation: 'auto' (the
      measured fastest for the backend: 'grouped' on GPU, 'unrolled' on
      CPU; layers.resolve_implementation) or one of layers.IMPLEMENTATIONS
      (same parameters and outputs for all).
    conv_implementation: the other convolutions' formulation, 'auto'
      ('blocked' channel blocks on CPU, ~5x faster there; one XLA conv
      elsewhere; au_jax/models/conv.py) or one of conv.IMPLEMENTATIONS
      (same parameters and outputs for all).
    axis_name: pmap axis name for synchronised batch-norm statistics.
    dtype: compute dtype, a dtype or its name ('bfloat16' on GPU: mixed
      precision). Parameters, batch-norm statistics (reduced in float32)
      and the returned logits/features stay float32, so the loss and the
      optimiser state are float32 too.
  """
  num_aus: int
  dropout_rate: float = 0.5
  region_grid: tuple[int, int] = (8, 8)
  affine_patch_norm: bool = False
  use_lrn: bool = True
  region_implementation: str = 'auto'
  conv_implementation: str = 'auto'
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """batch['image']: [B, H, W, 3] float32, normalised (170x170 in DRML).

    Returns (logits [B, C] float32, {'features': fc9 output [B, 2048]}).
    """
    x = batch['image']
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(
          f"DRML expects batch['image'] of shape [B, H, W, 3], got {x.shape}.")
    dtype = layers.canonical_dtype(self.dtype)
    x = x.astype(dtype)
    conv = functools.partial(
        conv_lib.Conv, padding='VALID', dtype=dtype,
        kernel_init=layers.caffe_xavier, bias_init=nn.initializers.zeros,
        implementation=self.conv_implementation)
    dense = functools.partial(
        nn.Dense, dtype=dtype,
        kernel_init=layers.caffe_xavier, bias_init=nn.initializers.zeros)

    # conv1 feeds the region layer directly: no ReLU (prototxt).
    x = conv(32, (11, 11), name='conv1')(x)
    x = layers.RegionLayer(
        grid=tuple(self.region_grid),
        implementation=self.region_implementation,
        affine_norm=self.affine_patch_norm, axis_name=self.axis_name,
        dtype=dtype, name='region2')(x, train)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    if self.use_lrn:
      x = layers.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75,
                                   name='pool3_lrn')(x)
    else:
      x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name,
                       dtype=dtype, name='pool3_norm')(x)
    x = nn.relu(conv(16, (8, 8), name='conv4')(x))
    x = nn.relu(conv(16, (8, 8), name='conv5')(x))
    x = nn.relu(conv(16, (6, 6), strides=(2, 2), name='conv6')(x))
    x = nn.relu(conv(16, (5, 5), name='conv7')(x))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(dense(4096, name='fc8')(x))
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    features = nn.relu(dense(2048, name='fc9')(x))
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(features)
    logits = dense(self.num_aus, name='output')(x)
    return logits.astype(jnp.float32), {
        'features': features.astype(jnp.float32)}
