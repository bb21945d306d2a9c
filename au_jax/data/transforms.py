"""grain transforms from frame records (records.py) to batchable examples.

Each transform is a thin grain `Map`/`RandomMap` over a plain function that is
unit-tested on hand-made arrays. Transforms return a new dict and never write
into the record they get (data sources may hand out shared arrays).

Coordinates: landmarks are (x, y) with pixel centres at integer positions
(pixel (row r, column c) is the point x=c, y=r), the convention of OpenCV's
INTER_LINEAR resize. So resizing width W to W' maps x -> (x + 0.5) W'/W - 0.5,
cropping at (top, left) maps x -> x - left, and mirroring width W maps
x -> W - 1 - x. A landmark is absent when both coordinates are -1
(records.UNKNOWN); absent points stay exactly -1 through every op. Present
points that fall outside a crop keep their (out-of-range) coordinates.
"""

from typing import Any, Iterable, Mapping, Sequence

import cv2
import grain
import numpy as np

from au_jax.data import records

Element = dict[str, Any]

# Text fields of a record; batching needs numbers, so they leave here.
TEXT_FIELDS = ('subject', 'sequence')


def _ibug68_mirror_permutation() -> np.ndarray:
  """Index of each iBUG-68 point's mirror partner (0-based point numbers)."""
  pairs = (
      # Jaw line 0..16 runs across the face: point i mirrors point 16 - i.
      *((i, 16 - i) for i in range(8)),
      # Eyebrows 17..21 and 22..26, each listed left to right in the image.
      (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
      # Lower nose 31..35 (33 is the tip, on the midline).
      (31, 35), (32, 34),
      # Eyes: 36/45 outer corners, 37-38/44-43 upper lids, 39/42 inner
      # corners, 40-41/47-46 lower lids.
      (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
      # Outer lips: 48/54 corners, 49-50/53-52 upper, 59-58/55-56 lower.
      (48, 54), (49, 53), (50, 52), (59, 55), (58, 56),
      # Inner lips: 60/64 corners, 61/63 upper, 67/65 lower.
      (60, 64), (61, 63), (67, 65),
  )
  # Points on the midline map to themselves: chin 8, nose bridge 27-30, nose
  # tip 33, lip centres 51, 57, 62, 66.
  permutation = np.arange(records.NUM_LANDMARKS)
  for a, b in pairs:
    permutation[a], permutation[b] = b, a
  return permutation


# mirrored[i] = flipped_points[MIRROR_PERMUTATION[i]]: after a horizontal flip
# the point that sits where the subject's right eye corner was is now the
# left one, so the indices swap to keep each index's meaning.
MIRROR_PERMUTATION = _ibug68_mirror_permutation()


def _absent(landmarks: np.ndarray) -> np.ndarray:
  """[N] bool: points whose x and y are both records.UNKNOWN (-1)."""
  return np.all(landmarks == records.UNKNOWN, axis=-1)


def select_labels(occurrence: np.ndarray, intensity: np.ndarray,
                  indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Record labels in config AU order.

  Args:
    occurrence: [C_ds] int8, 1 / 0 / -1 unknown, dataset (record) AU order.
    intensity: [C_ds] float32, -1 not coded.
    indices: [C_cfg] int, column of each config AU
      (`aus.label_indices(dataset, config.aus)`).

  Returns:
    occurrence [C_cfg] int32 and intensity [C_cfg] float32; -1 stays -1.
  """
  occurrence = np.asarray(occurrence)
  intensity = np.asarray(intensity)
  indices = np.asarray(indices)
  for name, labels in (('au_occurrence', occurrence),
                       ('au_intensity', intensity)):
    if labels.ndim != 1:
      raise ValueError(f'{name} must be [C] (one value per AU), got shape '
                       f'{labels.shape}.')
    if indices.size and (indices.min() < 0 or indices.max() >= labels.shape[0]):
      raise ValueError(f'label indices {indices.tolist()} out of range for '
                       f'{name} with {labels.shape[0]} AUs: are they '
                       'label_indices() of this dataset?')
  return (occurrence[indices].astype(np.int32),
          intensity[indices].astype(np.float32))


def _text(value: Any) -> str:
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def sequence_key(subject: Any, sequence: Any) -> str:
  """'F001/T1': the key of a frame's sequence (bytes from TFDS are decoded)."""
  return f'{_text(subject)}/{_text(sequence)}'


def make_sequence_ids(keys: Iterable[str]) -> dict[str, int]:
  """Ids 0..K-1 for the distinct `sequence_key`s, in sorted key order."""
  return {key: i for i, key in enumerate(sorted(set(_text(k) for k in keys)))}


def resize_face(image: np.ndarray, landmarks: np.ndarray,
                size: int) -> tuple[np.ndarray, np.ndarray]:
  """Bilinear resize of `image` [H, W, ...] to [size, size, ...].

  Landmarks [68, 2] follow with x -> (x + 0.5) size / W - 0.5 (and y with H),
  the sampling of cv2.INTER_LINEAR. An image already `size` x `size` is
  returned as is.
  """
  height, width = image.shape[:2]
  if (height, width) == (size, size):
    return image, landmarks
  resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
  if image.ndim == 3 and resized.ndim == 2:  # cv2 drops a single channel.
    resized = resized[..., None]
  scale = np.array([size / width, size / height], np.float32)
  moved = (landmarks + 0.5) * scale - 0.5
  return resized, _keep_absent(landmarks, moved)


def crop(image: np.ndarray, landmarks: np.ndarray, top: int, left: int,
         size: int) -> tuple[np.ndarray, np.ndarray]:
  """`image`[top:top+size, left:left+size]; landmarks shift by (-left, -top)."""
  height, width = image.shape[:2]
  if not (0 <= top <= height - size and 0 <= left <= width - size):
    raise ValueError(f'crop of {size}x{size} at top={top}, left={left} does '
                     f'not fit in a {height}x{width} image.')
  cropped = image[top:top + size, left:left + size]
  moved = landmarks - np.array([left, top], np.float32)
  return cropped, _keep_absent(landmarks, moved)


def mirror(image: np.ndarray,
           landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Horizontal flip: x -> W - 1 - x and the iBUG-68 left/right relabelling.

  AU labels need no change: the AUs au_jax uses are coded bilaterally (one
  label per AU, not per face side), so a mirrored face shows the same AUs.
  """
  if landmarks.shape != (records.NUM_LANDMARKS, 2):
    raise ValueError(f'mirror needs iBUG-68 landmarks [68, 2], got shape '
                     f'{landmarks.shape}.')
  width = image.shape[1]
  flipped = np.ascontiguousarray(image[:, ::-1])
  moved = landmarks.copy()
  moved[:, 0] = width - 1 - landmarks[:, 0]
  moved = _keep_absent(landmarks, moved)
  return flipped, moved[MIRROR_PERMUTATION]


def _keep_absent(before: np.ndarray, after: np.ndarray) -> np.ndarray:
  after = after.astype(np.float32)
  after[_absent(before)] = records.UNKNOWN
  return after


def crop_flip(image: np.ndarray, landmarks: np.ndarray, resize: int,
              top: int, left: int, crop_size: int,
              flip: bool) -> tuple[np.ndarray, np.ndarray]:
  """resize -> crop at (top, left) -> optional mirror, landmarks following.

  Args:
    image: [H, W, 3] uint8 face.
    landmarks: [68, 2] float32 (x, y) pixels, -1 absent.
  Returns:
    image [crop_size, crop_size, 3] uint8 and landmarks [68, 2] float32.
  """
  landmarks = np.asarray(landmarks, np.float32)
  image, landmarks = resize_face(np.asarray(image), landmarks, resize)
  image, landmarks = crop(image, landmarks, top, left, crop_size)
  if flip:
    image, landmarks = mirror(image, landmarks)
  return np.ascontiguousarray(image), landmarks


def normalize(image: np.ndarray, mean: Sequence[float],
              std: Sequence[float]) -> np.ndarray:
  """[H, W, C] uint8 -> float32 (image / 255 - mean) / std, per channel."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'normalize expects a uint8 image, got {image.dtype} '
                     '(was it normalised twice?).')
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if mean.shape != (image.shape[-1],) or std.shape != (image.shape[-1],):
    raise ValueError(f'normalize: mean {mean.tolist()} / std {std.tolist()} '
                     f'need one value per channel of an image of shape '
                     f'{image.shape}.')
  # One multiply-add instead of three passes: x * (1 / (255 std)) - mean / std.
  return image.astype(np.float32) * (1.0 / (255.0 * std)) - mean / std


def to_batchable(element: Mapping[str, Any]) -> Element:
  """Every value as a numpy array of a numeric/bool dtype (grain stacks them).

  Python scalars become 0-d int32 / float32 / bool arrays, numpy values keep
  their dtype; text or object values raise, naming the key (drop them or map
  them to ids first, see SelectLabels).
  """
  out = {}
  for key, value in element.items():
    # Python scalars would become int64/float64; JAX works in 32 bits.
    if isinstance(value, bool):
      array = np.asarray(value, np.bool_)
    elif isinstance(value, int):
      array = np.asarray(value, np.int32)
    elif isinstance(value, float):
      array = np.asarray(value, np.float32)
    else:
      array = np.asarray(value)
    if array.dtype.kind not in 'biuf':
      raise ValueError(f'field {key!r} has dtype {array.dtype} ({value!r:.60})'
                       '; batches need numbers: drop it or map it to an id.')
    out[key] = array
  return out


class SelectLabels(grain.transforms.Map):
  """Labels in config AU order; text fields dropped or mapped to ids.

  Output: 'au_occurrence' [C_cfg] int32, 'au_intensity' [C_cfg] float32, the
  other numeric fields unchanged ('image', 'landmarks', 'frame_index',
  'view', 'emotion', 'identity', 'face_found', ...), 'subject' and 'sequence'
  removed, and 'sequence_id' int32 when `sequence_ids` is given (median
  smoothing needs to know which frames share a sequence). The output passes
  through `to_batchable`: TFDS hands scalars out as Python int/bool, which
  become int32/bool arrays here.
  """

  def __init__(self, indices: np.ndarray,
               sequence_ids: Mapping[bytes | str, int] | None = None):
    """Args: indices from aus.label_indices; sequence_ids maps sequence_key
    ('subject/sequence', str or bytes) -> int (see make_sequence_ids)."""
    self.indices = np.asarray(indices, np.int32)
    if self.indices.ndim != 1 or not self.indices.size:
      raise ValueError(f'SelectLabels needs a non-empty [C] index vector, got '
                       f'{indices!r}.')
    self.sequence_ids = None
    if sequence_ids is not None:
      self.sequence_ids = {_text(k): int(v) for k, v in sequence_ids.items()}

  def map(self, element: Mapping[str, Any]) -> Element:
    out = {k: v for k, v in element.items() if k not in TEXT_FIELDS}
    out['au_occurrence'], out['au_intensity'] = select_labels(
        element['au_occurrence'], element['au_intensity'], self.indices)
    if self.sequence_ids is not None:
      key = sequence_key(element['subject'], element['sequence'])
      if key not in self.sequence_ids:
        raise KeyError(f'sequence {key!r} (frame {element.get("frame_index")})'
                       ' has no id in sequence_ids: build the dict from the '
                       'same splits the pipeline reads.')
      out['sequence_id'] = np.int32(self.sequence_ids[key])
    # TFDS data sources return scalars as Python int/bool: make them 32-bit
    # numpy values here, the first step, so batches need no later cast.
    return to_batchable(out)


def _check_sizes(resize: int, crop_size: int) -> None:
  if not 0 < crop_size <= resize:
    raise ValueError(f'need 0 < crop <= resize, got crop={crop_size}, '
                     f'resize={resize}.')


class RandomCropFlip(grain.transforms.RandomMap):
  """DRML-style training augmentation: resize, random crop, random mirror.

  The stored square face becomes `resize` x `resize` (bilinear), a uniformly
  placed `crop` x `crop` window is cut, and with probability 0.5 (if `flip`)
  it is mirrored. 'image' and 'landmarks' change; labels do not (see mirror).
  """

  def __init__(self, resize: int, crop: int, flip: bool = True):
    _check_sizes(resize, crop)
    self.resize, self.crop, self.flip = resize, crop, flip

  def random_map(self, element: Mapping[str, Any],
                 rng: np.random.Generator) -> Element:
    top, left = rng.integers(0, self.resize - self.crop + 1, size=2)
    flip = bool(self.flip and rng.random() < 0.5)
    out = dict(element)
    out['image'], out['landmarks'] = crop_flip(
        element['image'], element['landmarks'], self.resize, int(top),
        int(left), self.crop, flip)
    return out


class CenterCrop(grain.transforms.Map):
  """Evaluation counterpart of RandomCropFlip: resize, central crop, no flip."""

  def __init__(self, resize: int, crop: int):
    _check_sizes(resize, crop)
    self.resize, self.crop = resize, crop

  def map(self, element: Mapping[str, Any]) -> Element:
    offset = (self.resize - self.crop) // 2
    out = dict(element)
    out['image'], out['landmarks'] = crop_flip(
        element['image'], element['landmarks'], self.resize, offset, offset,
        self.crop, flip=False)
    return out


# ImageNet channel statistics (RGB), the usual choice for the pre-trained
# backbones (VGG-16, ResNet-34) the papers start from.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(grain.transforms.Map):
  """'image' uint8 -> float32 (x / 255 - mean) / std per channel.

  Deviation: DRML subtracts a mean face image; au_jax subtracts a per-channel
  mean (no dataset-specific mean image to compute and ship per fold).
  """

  def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD):
    self.mean = tuple(float(m) for m in mean)
    self.std = tuple(float(s) for s in std)
    if any(s <= 0 for s in self.std):
      raise ValueError(f'Normalize: std must be > 0, got {self.std}.')

  def map(self, element: Mapping[str, Any]) -> Element:
    out = dict(element)
    out['image'] = normalize(element['image'], self.mean, self.std)
    return out


class ToBatchable(grain.transforms.Map):
  """grain Map over `to_batchable`: last step before grain's Batch."""

  def map(self, element: Mapping[str, Any]) -> Element:
    return to_batchable(element)


ID_BYTES = 48  # Fixed width of a text id carried through batches as uint8.


def encode_text_id(value: Any) -> np.ndarray:
  """'F001' / b'F001' -> [ID_BYTES] uint8, zero-padded (UTF-8)."""
  data = _text(value).encode('utf-8')
  if len(data) > ID_BYTES:
    raise ValueError(f'id {data!r} is longer than {ID_BYTES} bytes.')
  out = np.zeros([ID_BYTES], np.uint8)
  out[:len(data)] = np.frombuffer(data, np.uint8)
  return out


def decode_text_ids(codes: np.ndarray) -> np.ndarray:
  """[N, ID_BYTES] uint8 -> [N] str (inverse of encode_text_id)."""
  codes = np.asarray(codes, np.uint8)
  return np.array([bytes(row).rstrip(b'\0').decode('utf-8')
                   for row in codes.reshape(-1, ID_BYTES)], dtype=object)


class KeepTextIds(grain.transforms.Map):
  """Carries 'subject' and 'sequence' through batching as uint8 codes
  ('subject_code', 'sequence_code' [ID_BYTES]), so evaluation results keep
  every frame's identity (decode with `decode_text_ids`)."""

  def map(self, element: Mapping[str, Any]) -> Element:
    out = dict(element)
    for field in TEXT_FIELDS:
      out[f'{field}_code'] = encode_text_id(element[field])
    return out


class Resize(grain.transforms.Map):
  """The host's only image work when augmentation runs on the device: the
  stored face resized to `size` x `size`, kept uint8 (4x fewer bytes to
  copy than float32); crop, mirror and normalisation happen in the jitted
  step (au_jax/data/device_transforms.py)."""

  def __init__(self, size: int):
    if size <= 0:
      raise ValueError(f'Resize: size must be > 0, got {size}.')
    self.size = size

  def map(self, element: Mapping[str, Any]) -> Element:
    out = dict(element)
    out['image'], out['landmarks'] = resize_face(
        np.asarray(element['image']),
        np.asarray(element['landmarks'], np.float32), self.size)
    return out
