"""IdenNet: identity-aware AU detection (Tu, Yang & Hsu).

Paper: ../shared/papers/idennet_poster.txt ("Proposed Method", "Network
architecture"); exact layers from the authors' released code in
../shared/reference/architectures.md (IdenNet section):

  LightCNN-4 trunk (au_jax/models/lightcnn.py)      [B, S * S * 192]
  fc5: Dense 512 -> MFM 256 -> L2-normalise         identity embedding e
  fc6: Dense 512 -> MFM 256                         AU feature f
  output (the paper's fc7): Dense C on f - e        AU logits

"We subtract output features of FC5 from FC6 to reduce identity information
and focus on AU-related data for label detection" (poster). The face
clustering (triplet) loss on e and the AU loss on the logits live in
au_jax/methods/idennet.py; this module returns e in aux.

Parameters (12 AUs, RGB input): 6,574,796 at 128x128 with Caffe's ceil
pooling (5x5x192 = 4,800 inputs to fc5/fc6), 4,805,324 with floor pooling
(4x4x192); with `grayscale=True` both are 15,552 fewer (6,559,244 /
4,789,772, the reference's "about 6.56M / 4.79M").

Deviations, named: flax's default initialisers (LeCun normal kernels, zero
biases; the authors' initialisers are not in our reference); no dropout (none
in the reference layers); the input side is a config choice (the authors'
code takes it as an argument).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from au_jax.models import lightcnn

Array = jax.Array


def l2_normalise(x: Array, epsilon: float = 1e-10) -> Array:
  """x / ||x|| over the last axis; a zero vector stays zero (no NaN)."""
  squared = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared, epsilon))


class Model(nn.Module):
  """IdenNet: LightCNN trunk, identity embedding fc5, AU feature fc6.

  Attributes:
    num_aus: number of AU logits C.
    identity_branch: False drops fc5 (ablation "no identity branch": a plain
      LightCNN AU detector; aux has no 'embedding' and the method's triplet
      loss is 0).
    subtract_identity: False feeds fc6 alone to the classifier while fc5 is
      still trained by the triplet loss (ablation "no subtraction").
    hidden_size: width of fc5/fc6 before MFM (reference: 512).
    ceil_pool: Caffe's ceil rounding in the trunk's pools (faithful).
    grayscale: luma input, the authors' option.
    axis_name: pmap axis for batch-norm statistics; unused (IdenNet has no
      batch norm), kept for the model contract.
    dtype: compute dtype; parameters, logits and aux stay float32.
  """
  num_aus: int
  identity_branch: bool = True
  subtract_identity: bool = True
  hidden_size: int = 512
  ceil_pool: bool = True
  grayscale: bool = False
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """batch['image']: [B, H, H, 3] float32, normalised.

    Returns:
      logits [B, C] float32 and aux with 'features' [B, H/2] (what the
      classifier sees: fc6 - fc5, or fc6 in the ablations), 'fc6' [B, H/2]
      and, with the identity branch, 'embedding' [B, H/2] (unit-norm fc5).
    """
    del train  # No dropout or batch norm in IdenNet.
    dense = functools.partial(nn.Dense, dtype=self.dtype)
    x = lightcnn.LightCNN4(ceil_pool=self.ceil_pool, grayscale=self.grayscale,
                           dtype=self.dtype, name='trunk')(batch['image'])
    fc6 = lightcnn.max_feature_map(dense(self.hidden_size, name='fc6')(x))
    fc6 = fc6.astype(jnp.float32)
    aux = {'fc6': fc6}
    au_features = fc6
    if self.identity_branch:
      fc5 = lightcnn.max_feature_map(dense(self.hidden_size, name='fc5')(x))
      embedding = l2_normalise(fc5.astype(jnp.float32))
      aux['embedding'] = embedding
      if self.subtract_identity:
        au_features = fc6 - embedding
    aux['features'] = au_features
    logits = dense(self.num_aus, name='output')(au_features.astype(self.dtype))
    return logits.astype(jnp.float32), aux
