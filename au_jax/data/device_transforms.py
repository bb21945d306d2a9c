"""Training augmentation and normalisation inside the jitted step.

The host only decodes and resizes: batches leave it as uint8 faces
[B, R, R, 3] (R = config.resize_size) with their landmarks in that frame.
These pure, jittable functions then do on the device what the host
transforms in `au_jax/data/transforms.py` do per record (the host
spent ~50% of its time on crop/flip/normalise in numpy, and float32
batches are 4x the bytes of uint8 to copy):

  random crop (crop_size out of R) -> horizontal mirror with probability 0.5
  (landmarks mirrored, iBUG-68 left/right indices swapped) -> normalise to
  float32 (or the model's compute dtype); a centre crop for evaluation.

Same geometry as the host versions: for the same (top, left, flip) they
give the same pixels and landmarks (tests/test_device_transforms.py). The
random draws come from a key derived from (seed, step, device index) only,
so a resumed run repeats exactly the augmentation it would have seen.

Normalisation: (x * pixel_range / 255 - mean) / std per channel, with
pixel_range 1 (x / 255, the ImageNet convention of transforms.Normalize) or
255 (Caffe: raw 0-255 minus a mean in 0-255 units, std 1).
"""

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from au_jax import parallel
from au_jax.data import records
from au_jax.data import transforms

Array = jax.Array

# Same table as the host transforms, as a constant for the device.
MIRROR_PERMUTATION = np.asarray(transforms.MIRROR_PERMUTATION, np.int32)


def augmentation_key(seed: int | Array, step: int | Array,
                     device_index: int | Array = 0) -> Array:
  """The augmentation key of one device at one step.

  A function of (seed, step, device index) only, so resuming at `step`
  draws the same crops and flips. `seed` is an int or a PRNG key (e.g. the
  trainer's per-fold key). Under pmap pass
  `lax.axis_index(parallel.AXIS_NAME)` as `device_index`; `step` may be a
  traced value (e.g. `state.step`).
  """
  is_key = (isinstance(seed, jax.Array)
            and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key))
  key = seed if is_key else jax.random.key(seed)
  # A distinct stream from dropout: the trainer folds step and device into
  # the same seed for its dropout key, so salt this one first.
  key = jax.random.fold_in(key, 0x61756721)  # 'aug!'
  return jax.random.fold_in(jax.random.fold_in(key, step), device_index)


def sample_crop_flip(key: Array, batch_size: int, resize_size: int,
                     crop_size: int, flip: bool = True
                     ) -> tuple[Array, Array, Array]:
  """Per-example crop offsets and mirror decisions.

  Returns:
    top, left: [B] int32, uniform in [0, resize_size - crop_size].
    flips: [B] bool, True with probability 0.5 (all False if not `flip`).
  """
  _check_sizes(resize_size, crop_size)
  offset_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(offset_key, (2, batch_size), 0,
                               resize_size - crop_size + 1, jnp.int32)
  flips = (jax.random.bernoulli(flip_key, 0.5, (batch_size,)) if flip
           else jnp.zeros((batch_size,), bool))
  return offsets[0], offsets[1], flips


def crop_flip(images: Array, landmarks: Array | None, top: Array,
              left: Array, flips: Array, crop_size: int
              ) -> tuple[Array, Array | None]:
  """Crops every image at its own (top, left), then mirrors where `flips`.

  Args:
    images: [B, R, R, C] (any dtype; uint8 from the host).
    landmarks: [B, 68, 2] float32 (x, y) in the R x R frame, -1 absent; or
      None when the batch carries none.
    top, left: [B] int, crop offsets; flips: [B] bool.
    crop_size: output side S.

  Returns:
    images [B, S, S, C] (same dtype) and landmarks [B, 68, 2] float32 moved
    as transforms.crop_flip moves them (absent points stay -1).
  """
  channels = images.shape[-1]

  def one(image, t, l):
    return lax.dynamic_slice(image, (t, l, 0), (crop_size, crop_size, channels))

  cropped = jax.vmap(one)(images, top, left)
  mirrored = cropped[:, :, ::-1]
  out = jnp.where(flips[:, None, None, None], mirrored, cropped)
  if landmarks is None:
    return out, None
  landmarks = landmarks.astype(jnp.float32)
  absent = jnp.all(landmarks == records.UNKNOWN, axis=-1, keepdims=True)
  shift = jnp.stack([left, top], -1).astype(jnp.float32)[:, None, :]
  moved = landmarks - shift
  flipped = moved.at[..., 0].set(crop_size - 1 - moved[..., 0])
  # The host mirrors before relabelling: mirrored[i] = flipped[perm[i]].
  flipped = jnp.where(absent, records.UNKNOWN, flipped)[:, MIRROR_PERMUTATION]
  moved = jnp.where(absent, records.UNKNOWN, moved)
  return out, jnp.where(flips[:, None, None], flipped, moved)


def center_crop(images: Array, landmarks: Array | None, crop_size: int
                ) -> tuple[Array, Array | None]:
  """Evaluation crop: the central S x S window (transforms.CenterCrop)."""
  batch_size, size = images.shape[0], images.shape[1]
  _check_sizes(size, crop_size)
  offset = jnp.full((batch_size,), (size - crop_size) // 2, jnp.int32)
  return crop_flip(images, landmarks, offset, offset,
                   jnp.zeros((batch_size,), bool), crop_size)


def normalize(images: Array, mean: Sequence[float], std: Sequence[float],
              pixel_range: float = 1.0, dtype: Any = jnp.float32) -> Array:
  """uint8 [..., C] -> (x * pixel_range / 255 - mean) / std in `dtype`.

  pixel_range=1: x / 255 (transforms.normalize); 255: Caffe's raw 0-255
  values minus a mean given in 0-255 units. The arithmetic runs in float32
  and only the result is cast, so bfloat16 sees one rounding.
  """
  if images.dtype != jnp.uint8:
    raise ValueError(f'normalize expects uint8 images, got {images.dtype} '
                     '(was the batch normalised on the host already?).')
  channels = images.shape[-1]
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if mean.shape != (channels,) or std.shape != (channels,):
    raise ValueError(f'normalize: mean {mean.tolist()} / std {std.tolist()} '
                     f'need one value per channel of images {images.shape}.')
  if np.any(std <= 0):
    raise ValueError(f'normalize: std must be > 0, got {std.tolist()}.')
  # Host formula, one multiply-add: x * (range / (255 std)) - mean / std.
  scale = np.float32(pixel_range) / (np.float32(255.0) * std)
  out = images.astype(jnp.float32) * scale - mean / std
  return out.astype(jnp.dtype(dtype))


def _check_sizes(resize_size: int, crop_size: int) -> None:
  if not 0 < crop_size <= resize_size:
    raise ValueError(f'need 0 < crop <= resize, got crop={crop_size}, '
                     f'resize={resize_size}.')


def _check_batch(batch: Mapping[str, Array], resize_size: int) -> None:
  image = batch['image']
  if (image.ndim != 4 or image.shape[1:] != (resize_size, resize_size, 3)
      or image.dtype != jnp.uint8):
    raise ValueError(
        f"device transforms expect batch['image'] uint8 [B, {resize_size}, "
        f'{resize_size}, 3] (config.resize_size), got {image.dtype} '
        f'{tuple(image.shape)}.')


def _normalize_config(images: Array, config: Any) -> Array:
  return normalize(images, tuple(config.pixel_mean), tuple(config.pixel_std),
                   pixel_range=config.get('pixel_range', 1.0),
                   dtype=config.get('dtype', 'float32'))


def _flow_crop_flip(flow: Array, top: Array, left: Array, flips: Array,
                    config: Any) -> Array:
  """batch['flow'] (AUNets' flow image, uint8 [B, R, R, 3]) cut and
  mirrored with the face, then normalised like it. Mirroring the frames
  negates u, i.e. reflects the encoded R channel about mid-grey (255 - R;
  preprocess/flow.mirror_flow_image); v and |flow| are unchanged."""
  if flow.shape != (flow.shape[0], config.resize_size, config.resize_size,
                    3) or flow.dtype != jnp.uint8:
    raise ValueError(f"device transforms expect batch['flow'] uint8 [B, "
                     f'{config.resize_size}, {config.resize_size}, 3], got '
                     f'{flow.dtype} {tuple(flow.shape)}.')
  flow, _ = crop_flip(flow, None, top, left, flips, config.crop_size)
  reflected = flow.at[..., 0].set(255 - flow[..., 0])
  flow = jnp.where(flips[:, None, None, None], reflected, flow)
  return _normalize_config(flow, config)


def train_preprocess(batch: Mapping[str, Array], key: Array,
                     config: Any) -> dict[str, Array]:
  """Random crop + mirror + normalise of a uint8 batch, on the device.

  Args:
    batch: 'image' [B, R, R, 3] uint8 with R = config.resize_size,
      optionally 'landmarks' [B, 68, 2] in the R x R frame; other fields
      pass through unchanged.
    key: from `augmentation_key(seed, step)`, the same on every device.
    config: crop_size, resize_size, flip, pixel_mean, pixel_std, and
      optionally pixel_range (1.0) and dtype ('float32').

  Returns:
    The batch with 'image' [B, S, S, 3] normalised in config.dtype and
    'landmarks' in the S x S crop (S = config.crop_size).
  """
  _check_batch(batch, config.resize_size)
  images = batch['image']
  # Drawn for the whole global batch and taken at this device's rows
  # (parallel.global_rows), so a draw follows the example, not the device.
  rows, total = parallel.global_rows(images.shape[0])
  top, left, flips = sample_crop_flip(
      key, total, config.resize_size, config.crop_size,
      config.get('flip', True))
  if rows is not None:
    top, left, flips = top[rows], left[rows], flips[rows]
  images, landmarks = crop_flip(images, batch.get('landmarks'), top, left,
                                flips, config.crop_size)
  out = dict(batch, image=_normalize_config(images, config))
  if landmarks is not None:
    out['landmarks'] = landmarks
  if 'flow' in batch:
    out['flow'] = _flow_crop_flip(batch['flow'], top, left, flips, config)
  return out


def eval_preprocess(batch: Mapping[str, Array],
                    config: Any) -> dict[str, Array]:
  """Centre crop + normalise of a uint8 batch (train_preprocess's twin)."""
  _check_batch(batch, config.resize_size)
  images, landmarks = center_crop(batch['image'], batch.get('landmarks'),
                                  config.crop_size)
  out = dict(batch, image=_normalize_config(images, config))
  if landmarks is not None:
    out['landmarks'] = landmarks
  if 'flow' in batch:
    size = batch['flow'].shape[0]
    offset = jnp.full((size,), (config.resize_size - config.crop_size) // 2,
                      jnp.int32)
    out['flow'] = _flow_crop_flip(batch['flow'], offset, offset,
                                  jnp.zeros((size,), bool), config)
  return out
