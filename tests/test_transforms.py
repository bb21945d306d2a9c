"""Tests of au_jax.data.transforms on hand-made images, landmarks and labels."""

import grain
import numpy as np
import pytest

from au_jax.data import input_pipeline
from au_jax.data import transforms

ABSENT = -1.0


def _image(height=4, width=4):
  """[H, W, 3] uint8 with value 10 y + x + 100 c at row y, column x."""
  y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3),
                        indexing='ij')
  return (10 * y + x + 100 * c).astype(np.uint8)


def _absent_landmarks():
  return np.full((68, 2), ABSENT, np.float32)


def _symmetric_face(width=101):
  """iBUG-68 points of a face symmetric about x = (width - 1) / 2.

  Built from the iBUG-68 ordering rules only (jaw left to right, each brow
  left to right, each eye and each lip contour clockwise from its image-left
  corner), not from transforms.MIRROR_PERMUTATION.
  """
  c = (width - 1) / 2
  angles = np.pi * np.arange(17) / 16
  jaw = np.stack([c - 40 * np.cos(angles), 50 + 40 * np.sin(angles)], -1)
  brow_y = [32, 29, 28, 29, 31]
  left_brow = [(c - 30 + 5 * i, brow_y[i]) for i in range(5)]
  right_brow = [(c + 10 + 5 * i, brow_y[4 - i]) for i in range(5)]
  bridge = [(c, 35 + 5 * i) for i in range(4)]
  nostrils = [(c - 6 + 3 * i, 57 - abs(i - 2)) for i in range(5)]

  def eye(x0):  # clockwise from the image-left corner, a symmetric eye
    return [(x0, 40), (x0 + 5, 37), (x0 + 10, 37), (x0 + 15, 40),
            (x0 + 10, 42), (x0 + 5, 42)]

  outer_upper = [(c - 15 + 5 * k, 70 - (3, 5, 4)[min(k, 6 - k) - 1]
                  if 0 < k < 6 else 70) for k in range(7)]
  outer_lower = [(c + 10 - 5 * k, (74, 76, 77, 76, 74)[k]) for k in range(5)]
  inner_upper = [(c - 12 + 6 * k, 70 if k in (0, 4) else 69)
                 for k in range(5)]
  inner_lower = [(c + 6 - 6 * k, 72) for k in range(3)]
  points = np.concatenate([
      jaw, left_brow, right_brow, bridge, nostrils, eye(c - 25), eye(c + 10),
      outer_upper, outer_lower, inner_upper, inner_lower]).astype(np.float32)
  assert points.shape == (68, 2)
  return points


def test_mirror_permutation_is_an_involution_with_midline_fixed_points():
  perm = transforms.MIRROR_PERMUTATION
  assert sorted(perm) == list(range(68))
  np.testing.assert_array_equal(perm[perm], np.arange(68))
  fixed = np.flatnonzero(perm == np.arange(68)).tolist()
  assert fixed == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]


def test_mirror_maps_symmetric_face_onto_itself():
  face = _symmetric_face()
  image = np.zeros((101, 101, 3), np.uint8)
  _, mirrored = transforms.mirror(image, face)
  np.testing.assert_allclose(mirrored, face, atol=1e-4)


def test_mirror_twice_is_identity():
  rng = np.random.default_rng(0)
  face = _symmetric_face() + rng.normal(0, 3, (68, 2)).astype(np.float32)
  face[5] = ABSENT
  image = rng.integers(0, 256, (101, 101, 3), dtype=np.uint8)
  once_image, once = transforms.mirror(image, face)
  twice_image, twice = transforms.mirror(once_image, once)
  np.testing.assert_array_equal(twice_image, image)
  np.testing.assert_allclose(twice, face, atol=1e-4)
  # Point 5 (left jaw) moved to index 11 and stays absent.
  np.testing.assert_array_equal(once[11], [ABSENT, ABSENT])
  # Point 36 (left eye outer corner) is now index 45, at x -> 100 - x.
  np.testing.assert_allclose(once[45], [100 - face[36, 0], face[36, 1]])


def test_select_labels_order_and_dtypes():
  occurrence = np.array([1, 0, -1, 1], np.int8)
  intensity = np.array([3.0, 0.0, -1.0, 2.0], np.float32)
  occ, inten = transforms.select_labels(occurrence, intensity, [3, 0, 2])
  np.testing.assert_array_equal(occ, [1, 1, -1])
  np.testing.assert_array_equal(inten, [2.0, 3.0, -1.0])
  assert occ.dtype == np.int32 and inten.dtype == np.float32
  with pytest.raises(ValueError, match='out of range'):
    transforms.select_labels(occurrence, intensity, [4])


def _record(**overrides):
  record = dict(
      image=_image(), landmarks=_absent_landmarks(),
      au_occurrence=np.array([1, 0, -1], np.int8),
      au_intensity=np.array([2.0, 0.0, -1.0], np.float32),
      face_found=np.bool_(True), subject=b'S02', sequence=b'T3',
      frame_index=np.int32(7), view=np.int32(0), emotion=np.int32(-1),
      identity=np.int32(4))
  record.update(overrides)
  return record


def test_select_labels_map_drops_text_and_maps_sequence_ids():
  ids = transforms.make_sequence_ids(['S02/T3', 'S01/T1', b'S02/T3'])
  assert ids == {'S01/T1': 0, 'S02/T3': 1}
  record = _record()
  out = transforms.SelectLabels(np.array([2, 0]), {b'S02/T3': 1}).map(record)
  assert set(out) == {'image', 'landmarks', 'au_occurrence', 'au_intensity',
                      'face_found', 'frame_index', 'view', 'emotion',
                      'identity', 'sequence_id'}
  np.testing.assert_array_equal(out['au_occurrence'], [-1, 1])
  assert out['sequence_id'] == 1 and out['sequence_id'].dtype == np.int32
  assert out['identity'] == 4 and out['image'] is record['image']
  assert 'subject' in record  # the input record is left untouched
  plain = transforms.SelectLabels([0]).map(record)
  assert 'sequence_id' not in plain and 'sequence' not in plain
  # TFDS data sources give scalars as Python int / bool.
  python_scalars = _record(frame_index=7, view=0, emotion=-1, identity=4,
                           face_found=True)
  out = transforms.SelectLabels([0]).map(python_scalars)
  assert [out[k].dtype for k in ('frame_index', 'view', 'emotion',
                                 'identity', 'face_found')] == [
                                     np.int32] * 4 + [np.bool_]
  with pytest.raises(KeyError, match="'S02/T3'"):
    transforms.SelectLabels([0], {'S01/T1': 0}).map(record)


def test_crop_and_flip_hand_computed():
  landmarks = _absent_landmarks()
  landmarks[36] = (3, 2)  # x=3, y=2: the pixel of value 23 (+100 c)
  landmarks[8] = (2, 1)  # the crop's top-left pixel, value 12
  image, points = transforms.crop_flip(_image(), landmarks, resize=4, top=1,
                                       left=2, crop_size=2, flip=False)
  np.testing.assert_array_equal(image[..., 0], [[12, 13], [22, 23]])
  np.testing.assert_array_equal(image[..., 2], [[212, 213], [222, 223]])
  np.testing.assert_array_equal(points[36], [1, 1])
  np.testing.assert_array_equal(points[8], [0, 0])
  image, points = transforms.crop_flip(_image(), landmarks, resize=4, top=1,
                                       left=2, crop_size=2, flip=True)
  np.testing.assert_array_equal(image[..., 0], [[13, 12], [23, 22]])
  # x -> crop - 1 - x; point 36 is relabelled 45, the chin 8 stays 8.
  np.testing.assert_array_equal(points[45], [0, 1])
  np.testing.assert_array_equal(points[8], [1, 0])
  np.testing.assert_array_equal(points[36], [ABSENT, ABSENT])
  absent = np.ones(68, bool)
  absent[[45, 8]] = False
  assert np.all(points[absent] == ABSENT)
  # The pixel under each point is still the one it marked.
  assert image[1, 0, 0] == 23 and image[0, 1, 0] == 12


def test_resize_moves_landmarks_with_the_image():
  image = np.zeros((4, 4, 1), np.float32)
  image[2, 1] = 1.0  # x=1, y=2
  landmarks = _absent_landmarks()
  landmarks[0] = (1, 2)
  resized, points = transforms.resize_face(image, landmarks, 8)
  assert resized.shape == (8, 8, 1)
  # (x + 0.5) * 2 - 0.5: x 1 -> 2.5, y 2 -> 4.5.
  np.testing.assert_allclose(points[0], [2.5, 4.5])
  np.testing.assert_array_equal(points[1:], ABSENT)
  # Independent check: the bright blob's centroid sits at the moved point.
  weights = resized[..., 0]
  rows, cols = np.mgrid[0:8, 0:8]
  centroid = [(weights * cols).sum() / weights.sum(),
              (weights * rows).sum() / weights.sum()]
  np.testing.assert_allclose(centroid, points[0], atol=1e-5)
  same, same_points = transforms.resize_face(image, landmarks, 4)
  assert same is image and same_points is landmarks


def test_center_crop_and_bad_sizes():
  landmarks = _absent_landmarks()
  landmarks[0] = (3, 3)
  out = transforms.CenterCrop(resize=6, crop=4).map(
      {'image': _image(6, 6), 'landmarks': landmarks, 'view': 0})
  np.testing.assert_array_equal(out['image'][..., 0], _image(6, 6)[1:5, 1:5, 0])
  np.testing.assert_array_equal(out['landmarks'][0], [2, 2])
  assert out['view'] == 0
  with pytest.raises(ValueError, match='crop=8, resize=6'):
    transforms.RandomCropFlip(resize=6, crop=8)
  with pytest.raises(ValueError, match='does not fit'):
    transforms.crop(_image(), _absent_landmarks(), 3, 0, 2)


def test_random_crop_flip_seeded():
  landmarks = _absent_landmarks()
  landmarks[36] = (2, 3)
  record = {'image': _image(6, 6), 'landmarks': landmarks}
  transform = transforms.RandomCropFlip(resize=6, crop=4)
  first = transform.random_map(record, np.random.default_rng(7))
  again = transform.random_map(record, np.random.default_rng(7))
  np.testing.assert_array_equal(first['image'], again['image'])
  np.testing.assert_array_equal(first['landmarks'], again['landmarks'])
  seen = set()
  for seed in range(200):
    out = transform.random_map(record, np.random.default_rng(seed))
    flipped = out['landmarks'][45, 0] != ABSENT
    point = out['landmarks'][45 if flipped else 36]
    x, y = int(point[0]), int(point[1])
    # Whatever the draw, the marked pixel keeps its value (10 y + x = 32).
    assert out['image'][y, x, 0] == 32
    seen.add((flipped, x, y))
  # 3 x 3 crop offsets, each flipped or not, all drawn.
  assert len(seen) == 18
  no_flip = transforms.RandomCropFlip(resize=6, crop=4, flip=False)
  assert all(no_flip.random_map(record, np.random.default_rng(s))
             ['landmarks'][36, 0] != ABSENT for s in range(20))


def test_normalize_values():
  image = np.array([[[0, 255, 51]]], np.uint8)
  out = transforms.Normalize(mean=(0.5, 0.5, 0.2), std=(0.25, 0.5, 0.1)).map(
      {'image': image})['image']
  np.testing.assert_allclose(out, [[[-2.0, 1.0, 0.0]]], atol=1e-6)
  assert out.dtype == np.float32
  default = transforms.normalize(np.full((1, 1, 3), 255, np.uint8),
                                 transforms.IMAGENET_MEAN,
                                 transforms.IMAGENET_STD)
  np.testing.assert_allclose(default[0, 0], [(1 - 0.485) / 0.229,
                                             (1 - 0.456) / 0.224,
                                             (1 - 0.406) / 0.225], rtol=1e-6)
  with pytest.raises(ValueError, match='uint8'):
    transforms.normalize(out, (0, 0, 0), (1, 1, 1))


def test_to_batchable():
  out = transforms.to_batchable({'a': 3, 'b': 0.5, 'c': True,
                                 'd': np.int8(2)})
  assert [out[k].dtype for k in 'abcd'] == [np.int32, np.float32, np.bool_,
                                            np.int8]
  with pytest.raises(ValueError, match="'subject'"):
    transforms.to_batchable({'subject': b'S01'})


def test_grain_pipeline_is_deterministic():
  records = [_record(frame_index=np.int32(i)) for i in range(5)]

  def run():
    dataset = (grain.MapDataset.source(records).seed(3)
               .map(transforms.SelectLabels([0, 1], {'S02/T3': 0}))
               .random_map(transforms.RandomCropFlip(resize=6, crop=4))
               .map(transforms.Normalize())
               .map(transforms.ToBatchable())
               .batch(2))
    return list(dataset)

  first, second = run(), run()
  assert len(first) == 3
  assert first[0]['image'].shape == (2, 4, 4, 3)
  assert first[0]['au_occurrence'].shape == (2, 2)
  np.testing.assert_array_equal(first[2]['frame_index'], [4])
  for a, b in zip(first, second):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_oversampled_rows_balance_positives_by_hand():
  # 2 positives, 6 negatives: each positive 3 times, order kept.
  positive = np.array([0, 1, 0, 0, 1, 0, 0, 0], bool)
  np.testing.assert_array_equal(
      input_pipeline.oversampled_rows(positive),
      [0, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 7])
  # No positives, or more positives than negatives: every row once.
  np.testing.assert_array_equal(
      input_pipeline.oversampled_rows(np.zeros(3, bool)), [0, 1, 2])
  np.testing.assert_array_equal(
      input_pipeline.oversampled_rows(np.array([1, 1, 0], bool)), [0, 1, 2])
