"""Layers shared by the au_jax models: DRML's region layer, Caffe's LRN and
a dropout whose mask follows the example across devices.

The region layer (DRML, Zhao et al. CVPR 2016, poster "Region layer") cuts a
feature map into a grid of patches and gives every patch its own
batch-norm -> ReLU -> 3x3 conv, with nothing crossing patch borders, then adds
the whole input map back (identity) and applies a ReLU.

The per-patch 3x3 convolution can be written several ways that compute the
same function with the same parameters (kernel [gh, gw, 3, 3, C, C], bias
[gh, gw, C]) but run at very different speeds on XLA:CPU; see
`IMPLEMENTATIONS` and `benchmarks/region_layer.py`.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from au_jax import parallel

Array = jax.Array
Dtype = Any

# Caffe's 'xavier' filler (its default variance_norm FAN_IN): uniform in
# +-sqrt(3 / fan_in), i.e. variance 1 / fan_in. batch_axis skips the patch
# grid dimensions so fan_in = 3 * 3 * C_in for the region kernel.
caffe_xavier = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')
region_kernel_init = nn.initializers.variance_scaling(
    1.0, 'fan_in', 'uniform', batch_axis=(0, 1))

# Per-patch 3x3 convolution formulations (same parameters, same outputs).
# Region layer alone, forward + backward (grads w.r.t. params and input, BN
# in train mode), batch 16, 160x160x32, 8x8 grid, XLA:CPU on the shared
# 2-core machine, 2026-11-21, noisy
# (best of 5 windows of 3 calls; grouped: one call):
#   PYTHONPATH=. python benchmarks/region_layer.py --repeats=5
#   PYTHONPATH=. python benchmarks/region_layer.py --implementations=grouped \
#       --repeats=1 --steps=1
#   implementation  compile s  ms/call  img/s
#   unrolled             12.8      510   31.4
#   einsum                1.7     1242   12.9
#   shifted               1.8     1184   13.5
#   grouped               0.7   236096    0.07
# Forward only (--forward_only --repeats=5): unrolled 195 ms, einsum 954,
# shifted 649. At the CPU config's size (80x80x32 map, batch 32,
# --size=80 --batch_size=32): unrolled 408 ms, einsum 873, shifted 761; in
# a whole DRML train step there (90x90 input, batch 32, timed interleaved in
# one process) unrolled 2.48 s, einsum 2.95 s, shifted 3.11 s.
# 'unrolled' (64 convs) is fastest here, at the price of the longest
# compile. A lax.map over the 64 patches compiled in 1 s but ran ~20x slower
# than 'unrolled' (10.6 s), so it is not offered.
# On GPU the ranking flips: one NVIDIA H100, whole DRML train step, 170x170,
# 12 AUs, batch 128 (benchmarks/drml_vs_torch.py):
# 'grouped' 7,254 img/s float32 and 10,019 bfloat16, 'unrolled' 5,649 and
# 7,805 (cuDNN runs the 64 patch convs as one grouped conv).
# 'auto' (the default) picks by backend from these measurements: 'grouped'
# on GPU, 'unrolled' elsewhere (TPU unmeasured).
IMPLEMENTATIONS = ('unrolled', 'einsum', 'shifted', 'grouped')
AUTO_BY_BACKEND = {'gpu': 'grouped', 'cuda': 'grouped', 'rocm': 'grouped'}
AUTO_DEFAULT = 'unrolled'


def resolve_implementation(implementation: str,
                           backend: str | None = None) -> str:
  """'auto' -> the measured fastest formulation for `backend` (default:
  jax.default_backend()); any name in IMPLEMENTATIONS is returned as is."""
  if implementation == 'auto':
    backend = backend or jax.default_backend()
    return AUTO_BY_BACKEND.get(backend, AUTO_DEFAULT)
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(
        f'Unknown region layer implementation {implementation!r}; '
        f"choose 'auto' or one of {IMPLEMENTATIONS}.")
  return implementation


def canonical_dtype(dtype: Any) -> jnp.dtype:
  """A compute dtype from a config value: 'float32', 'bfloat16', 'float16'
  or a numpy/jnp dtype. Anything else is refused by name."""
  try:
    result = jnp.dtype(dtype)
  except TypeError as error:
    raise ValueError(f'Unknown compute dtype {dtype!r}; use float32, '
                     'bfloat16 or float16.') from error
  if result not in (jnp.float32, jnp.bfloat16, jnp.float16):
    raise ValueError(f'Compute dtype {dtype!r} is not a float type; use '
                     'float32, bfloat16 or float16.')
  return result


def _conv3x3(patch: Array, kernel: Array) -> Array:
  """One patch's SAME 3x3 conv. patch: [B, h, w, C], kernel: [3, 3, C, D]."""
  return lax.conv_general_dilated(
      patch, kernel, window_strides=(1, 1), padding='SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


# Every formulation takes the patches grid-major, z: [gh, gw, B, ph, pw, C],
# and kernel: [gh, gw, 3, 3, C, D], and returns [gh, gw, B, ph, pw, D].
# Grid-major puts the per-patch weights' index first, which is the layout
# XLA's batched matmul wants (batch dimensions leading): with the grid axes
# interleaved instead ([B, gh, ph, gw, pw, C]) the einsum formulation ran
# 2x slower here because of the transposes XLA inserted.


def _patch_conv_unrolled(z: Array, kernel: Array) -> Array:
  """gh * gw separate convolutions, unrolled in the traced program."""
  gh, gw = kernel.shape[:2]
  return jnp.stack([
      jnp.stack([_conv3x3(z[i, j], kernel[i, j]) for j in range(gw)])
      for i in range(gh)])


def _pad_patches(z: Array) -> Array:
  """Zero-pads every patch by one pixel (the conv's SAME padding)."""
  return jnp.pad(z, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))


def _patch_conv_einsum(z: Array, kernel: Array) -> Array:
  """im2col: 9 shifted copies concatenated, then one matmul per patch."""
  gh, gw, _, ph, pw, c = z.shape
  padded = _pad_patches(z)
  columns = jnp.concatenate(
      [padded[:, :, :, dy:dy + ph, dx:dx + pw]
       for dy in range(3) for dx in range(3)], axis=-1)  # [..., 9 * C]
  flat_kernel = kernel.reshape(gh, gw, 9 * c, kernel.shape[-1])
  return jnp.einsum('ijbhwk,ijkd->ijbhwd', columns, flat_kernel)


def _patch_conv_shifted(z: Array, kernel: Array) -> Array:
  """Sum over the 9 taps of a per-patch matmul on a shifted view (no im2col)."""
  _, _, _, ph, pw, _ = z.shape
  padded = _pad_patches(z)
  out = 0.
  for dy in range(3):
    for dx in range(3):
      tap = padded[:, :, :, dy:dy + ph, dx:dx + pw]
      out = out + jnp.einsum('ijbhwc,ijcd->ijbhwd', tap, kernel[:, :, dy, dx])
  return out


def _patch_conv_grouped(z: Array, kernel: Array) -> Array:
  """Patches moved into channel groups: one grouped conv (what vmap gives)."""
  gh, gw, b, ph, pw, c = z.shape
  d = kernel.shape[-1]
  groups = gh * gw
  stacked = z.transpose(2, 3, 4, 0, 1, 5).reshape(b, ph, pw, groups * c)
  # HWIO with O ordered group-major, as feature_group_count expects.
  grouped_kernel = kernel.transpose(2, 3, 4, 0, 1, 5).reshape(
      3, 3, c, groups * d)
  out = lax.conv_general_dilated(
      stacked, grouped_kernel, window_strides=(1, 1), padding='SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=groups)
  return out.reshape(b, ph, pw, gh, gw, d).transpose(3, 4, 0, 1, 2, 5)


_PATCH_CONVS: dict[str, Callable[[Array, Array], Array]] = {
    'unrolled': _patch_conv_unrolled,
    'einsum': _patch_conv_einsum,
    'shifted': _patch_conv_shifted,
    'grouped': _patch_conv_grouped,
}


class RegionLayer(nn.Module):
  """DRML region layer (poster, "Region layer" figure; authors' prototxt).

  x: [B, H, W, C] -> [B, H, W, C]. The map is cut into a `grid` of
  (H / gh) x (W / gw) patches. Each patch gets, with its own parameters:
  batch-norm over (batch, patch pixels), by default without scale/shift ->
  ReLU -> 3x3 conv C->C with zero padding at the patch border. The patch
  outputs are stitched back, the whole input map is added (identity) and a
  ReLU applied.

  Attributes:
    grid: (gh, gw) patches along height and width (8x8 in DRML).
    implementation: how the per-patch convs are computed: 'auto' (by
      backend, see resolve_implementation) or one of IMPLEMENTATIONS; all
      give the same outputs for the same parameters.
    affine_norm: give the patch batch-norm a learned scale and shift (the
      public ports' variant; the authors' Caffe BN has none).
    axis_name: pmap axis over which batch-norm statistics are averaged.
    momentum, epsilon: batch-norm running-average momentum and epsilon
      (flax's 0.99; Caffe's BN layer defaults to a 0.999 moving-average
      fraction, a deviation that only affects the eval-time statistics).
    dtype: compute dtype, a dtype or its name ('bfloat16'); parameters and
      batch-norm statistics stay float32.
  """
  grid: tuple[int, int] = (8, 8)
  implementation: str = 'auto'
  affine_norm: bool = False
  axis_name: str | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if x.ndim != 4:
      raise ValueError(f'RegionLayer expects [B, H, W, C], got {x.shape}.')
    implementation = resolve_implementation(self.implementation)
    dtype = canonical_dtype(self.dtype)
    b, h, w, c = x.shape
    gh, gw = self.grid
    if h % gh or w % gw:
      raise ValueError(
          f'RegionLayer: input height x width {h}x{w} (shape {x.shape}) is '
          f'not divisible by the patch grid {gh}x{gw}.')
    ph, pw = h // gh, w // gw
    patches = x.reshape(b, gh, ph, gw, pw, c)
    # feature axes (grid row, grid col, channel): one set of statistics per
    # patch and channel, reduced over batch and the patch's pixels.
    normed = nn.BatchNorm(
        use_running_average=not train, axis=(1, 3, 5),
        use_scale=self.affine_norm, use_bias=self.affine_norm,
        momentum=self.momentum, epsilon=self.epsilon,
        axis_name=self.axis_name, dtype=dtype,
        name='patch_norm')(patches)
    activated = nn.relu(normed)
    kernel = self.param('kernel', region_kernel_init, (gh, gw, 3, 3, c, c))
    bias = self.param('bias', nn.initializers.zeros, (gh, gw, c))
    grid_major = activated.astype(dtype).transpose(1, 3, 0, 2, 4, 5)
    out = _PATCH_CONVS[implementation](grid_major, kernel.astype(dtype))
    out = out + bias.astype(dtype)[:, :, None, None, None, :]
    out = out.transpose(2, 0, 3, 1, 4, 5).reshape(b, h, w, c)
    # Identity addition of the whole (un-normalised) input map, then ReLU.
    return nn.relu(out + x.astype(dtype))


def local_response_norm(x: Array, size: int = 5, alpha: float = 1e-4,
                        beta: float = 0.75, k: float = 1.0) -> Array:
  """Caffe's across-channel LRN on the last axis.

  b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2) ** beta,
  the window centred on c, `size` channels wide, zero outside (Caffe divides
  alpha by size; TensorFlow's lrn does not). x: [..., C] -> [..., C].
  """
  channels = x.shape[-1]
  # The sum of squares and the power run in float32 (fused, so no extra
  # memory traffic): in bfloat16, k + alpha / size * window rounds to k.
  dtype = x.dtype
  x = x.astype(jnp.promote_types(dtype, jnp.float32))
  before = (size - 1) // 2
  squared = jnp.pad(jnp.square(x),
                    [(0, 0)] * (x.ndim - 1) + [(before, size - 1 - before)])
  window = sum(squared[..., i:i + channels] for i in range(size))
  return (x / (k + (alpha / size) * window) ** beta).astype(dtype)


class LocalResponseNorm(nn.Module):
  """Parameter-free module around `local_response_norm` (DRML after pool3)."""
  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0

  def __call__(self, x: Array) -> Array:
    return local_response_norm(x, self.size, self.alpha, self.beta, self.k)


class Dropout(nn.Dropout):
  """nn.Dropout whose mask follows the example, not the device.

  Under pmap the mask is drawn for the whole global batch from the step's
  dropout key (the same on every device) and each device keeps its rows
  (parallel.global_rows), so P processes x D devices drop what one device
  drops for every example. On one device it draws exactly nn.Dropout's
  mask (same key, shape and scaling), so one-device runs are unchanged.
  """

  @nn.compact
  def __call__(self, inputs: Array, deterministic: bool | None = None,
               rng: Array | None = None) -> Array:
    deterministic = nn.merge_param('deterministic', self.deterministic,
                                   deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:  # Prevents gradient NaNs, as nn.Dropout.
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    rows, total = parallel.global_rows(inputs.shape[0])
    shape = [total, *inputs.shape[1:]]
    for dim in self.broadcast_dims:
      shape[dim] = 1
    mask = jax.random.bernoulli(rng, p=keep_prob, shape=shape)
    if rows is not None and mask.shape[0] != 1:
      mask = mask[rows]
    mask = jnp.broadcast_to(mask, inputs.shape)
    return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
