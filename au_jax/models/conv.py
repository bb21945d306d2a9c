"""A drop-in `nn.Conv` whose convolution XLA:CPU runs up to 10x faster.

XLA:CPU (jax 0.10, this AMD EPYC, float32) runs a convolution at one of two
very different speeds depending on its channel counts: with at most 16
input and 16 output channels it reaches ~120 GFLOP/s on the 2-core machine,
above that ~11 GFLOP/s. DRML's layers fall on the slow side, e.g. per face
at batch 32, forward only (`benchmarks/cpu_conv.py`):

  layer                    one conv   16x16 channel blocks   torch 2.13
  conv1 90x90x3 11x11 ->32   12.5 ms     2.0 ms                 1.2 ms
  conv4 40x40x32 8x8 ->16     5.8 ms     0.6 ms                 0.3 ms
  whole DRML forward         20.6 ms     5.1 ms

The backward pass gains less (DRML forward + backward, batch 32: 1,426 ->
1,121 ms), the region layer's per-patch convs (32 -> 32 on 10x10 patches)
run slower blocked (1.33 -> 2.75 ms per face), so they stay as they are
(au_jax/models/layers.py), and a VGG-16 encoder at width 1/8 gains nothing
(86 -> 90 ms per batch), so the VGG models keep one conv
(`PYTHONPATH=. python benchmarks/cpu_conv.py --more`, idle machine).

`blocked_conv` computes the same convolution as channel blocks of at most
`block` input x `block` output channels: the output blocks are concatenated
and the input blocks summed, so the parameters (one HWIO kernel and a bias,
named as nn.Conv names them) and the function are nn.Conv's; only the order
of the float32 additions differs (relative error ~1e-6). `Conv` picks the
formulation per backend ('auto': 'blocked' on CPU, 'xla' elsewhere, where
cuDNN has no such cliff), so checkpoints move freely between them.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

IMPLEMENTATIONS = ('xla', 'blocked')
AUTO_BY_BACKEND = {'cpu': 'blocked'}
BLOCK = 16


def resolve_implementation(implementation: str,
                           backend: str | None = None) -> str:
  """'auto' -> 'blocked' on CPU, 'xla' on other backends; a name in
  IMPLEMENTATIONS is returned as is, anything else is refused by name."""
  if implementation == 'auto':
    return AUTO_BY_BACKEND.get(backend or jax.default_backend(), 'xla')
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f'Unknown conv implementation {implementation!r}; '
                     f"choose 'auto' or one of {IMPLEMENTATIONS}.")
  return implementation


def _conv(x: Array, kernel: Array, strides: Sequence[int],
          padding: str | Sequence[tuple[int, int]]) -> Array:
  return lax.conv_general_dilated(
      x, kernel, window_strides=tuple(strides), padding=padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def blocked_conv(x: Array, kernel: Array, strides: Sequence[int] = (1, 1),
                 padding: str | Sequence[tuple[int, int]] = 'VALID',
                 block: int = BLOCK) -> Array:
  """lax.conv_general_dilated (NHWC, HWIO) as channel blocks.

  Args:
    x: [B, H, W, C_in].
    kernel: [kh, kw, C_in, C_out].
    strides, padding: as lax.conv_general_dilated.
    block: the most input and output channels of one block.

  Returns:
    [B, H', W', C_out], the convolution of x with kernel.
  """
  if block < 1:
    raise ValueError(f'blocked_conv: block must be positive, got {block}.')
  cin, cout = kernel.shape[2], kernel.shape[3]
  if x.shape[-1] != cin:
    raise ValueError(f'blocked_conv: input has {x.shape[-1]} channels, the '
                     f'kernel {cin} ({kernel.shape}).')
  outputs = []
  for o in range(0, cout, block):
    total = None
    for i in range(0, cin, block):
      term = _conv(x[..., i:i + block], kernel[:, :, i:i + block, o:o + block],
                   strides, padding)
      total = term if total is None else total + term
    outputs.append(total)
  return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, -1)


def _lax_padding(padding: Any) -> str | list[tuple[int, int]]:
  """nn.Conv's padding forms ('SAME', 'VALID', an int, ints or pairs per
  spatial dimension) as lax.conv_general_dilated wants them."""
  if isinstance(padding, str):
    if padding.upper() not in ('SAME', 'VALID'):
      raise ValueError(f'conv.Conv: padding {padding!r} is not supported; '
                       "use 'SAME', 'VALID' or explicit sizes.")
    return padding.upper()
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


class Conv(nn.Module):
  """nn.Conv's parameters and function (NHWC, no dilation, no groups).

  Attributes:
    features, kernel_size, strides, padding, use_bias, dtype, param_dtype,
      kernel_init, bias_init: as nn.Conv.
    implementation: 'auto' (per backend, see resolve_implementation),
      'xla' (one lax conv) or 'blocked' (blocked_conv).
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Any = 'SAME'
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Array] = nn.linear.default_kernel_init
  bias_init: Callable[..., Array] = nn.initializers.zeros
  implementation: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kh, kw = self.kernel_size
    kernel = self.param('kernel', self.kernel_init,
                        (kh, kw, x.shape[-1], self.features), self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    padding = _lax_padding(self.padding)
    if resolve_implementation(self.implementation) == 'blocked':
      y = blocked_conv(x, kernel, self.strides, padding)
    else:
      y = _conv(x, kernel, self.strides, padding)
    if bias is not None:
      y = y + bias
    return y
