"""au_jax.preprocess: face crop/alignment, landmarks, labels, video, flow."""

import os

import cv2
import numpy as np
import pytest

from au_jax.preprocess import face
from au_jax.preprocess import flow
from au_jax.preprocess import labels
from au_jax.preprocess import landmarks
from au_jax.preprocess import video
from data_builders.bp4d import make_dummy_data as faces
from au_jax.preprocess import frame_reading


def test_to_ibug68_drops_inner_mouth_corners_and_jaw():
  points66 = np.arange(132, dtype=np.float32).reshape(66, 2)
  out = landmarks.to_ibug68(points66)
  assert (out[[60, 64]] == -1).all()
  np.testing.assert_array_equal(out[59], points66[59])
  np.testing.assert_array_equal(out[61], points66[60])  # Shifted by one.
  np.testing.assert_array_equal(out[67], points66[65])  # Shifted by two.
  points49 = np.arange(98, dtype=np.float32).reshape(49, 2)
  out = landmarks.to_ibug68(points49)
  assert (out[:17] == -1).all() and (out[[60, 64]] == -1).all()
  np.testing.assert_array_equal(out[17], points49[0])
  np.testing.assert_array_equal(out[67], points49[48])
  with pytest.raises(ValueError, match='50 points'):
    landmarks.to_ibug68(np.zeros((50, 2)))


def test_crop_matrix_hand_computed():
  # Box 40x40 at (10, 20), margin 0.25 -> 60-pixel square centred (30, 40).
  matrix = face.crop_matrix(np.array([10, 20, 40, 40.]), 30, 0.25)
  np.testing.assert_allclose(matrix, [[0.5, 0, 0], [0, 0.5, -5]])
  out = face.transform_points(np.array([[30, 40], [0, 10], [-1, 5]]), matrix)
  np.testing.assert_allclose(out, [[15, 15], [0, 0], [-1, -1]])


def test_align_matrix_levels_eyes_on_template():
  eyes = np.array([[10., 10.], [30., 30.]])  # 45 degrees, 28.28 apart.
  matrix = face.align_matrix(eyes, 100, eye_distance=0.3, eye_height=0.4)
  out = face.transform_points(eyes, matrix)
  np.testing.assert_allclose(out, [[35, 40], [65, 40]], atol=1e-4)


def test_process_face_on_photo_finds_face_and_keeps_landmarks_on_pixels():
  image, matrix = faces.face_frame(400, 300, scale=0.6)
  box = face.detect_face(image)
  expected = np.concatenate([  # The photo's face box moved into the frame.
      faces.PHOTO_FACE[:2] * 0.6 + matrix[:, 2], faces.PHOTO_FACE[2:] * 0.6])
  np.testing.assert_allclose(box, expected, atol=12)
  # A green dot marked as a landmark must land on the same output pixel,
  # also through the area pre-shrink (scale < 0.5 at size 48).
  dot = np.array([190., 140.])
  marked = image.copy()
  cv2.circle(marked, (190, 140), 3, (0, 255, 0), -1)  # BGR green.
  points = np.full((68, 2), -1, np.float32)
  points[30] = dot
  for size in (48, 160):
    result = face.process_face(
        marked, points, face.FaceOptions(image_size=size, detector='haar'))
    assert result.source == 'haar' and result.face_found
    assert (result.landmark_source, result.confidence) == (
        'dataset', face.HAAR_CONFIDENCE)
    assert result.image.shape == (size, size, 3)
    pixels = result.image.astype(float)
    greenness = pixels[..., 1] - pixels[..., [0, 2]].mean(axis=-1)
    brightest = np.unravel_index(np.argmax(greenness), greenness.shape)[::-1]
    np.testing.assert_allclose(brightest, result.landmarks[30], atol=1.5)
    assert (result.landmarks[np.arange(68) != 30] == -1).all()


def test_process_face_fallbacks_are_marked():
  blank = np.full((120, 160, 3), 100, np.uint8)
  result = face.process_face(blank, None, face.FaceOptions(image_size=32))
  assert (result.source, result.face_found) == ('centre', False)
  # Centre square of a 160x120 frame: x 20..140 -> 0..32.
  np.testing.assert_allclose(result.matrix, [[32 / 120, 0, -20 * 32 / 120],
                                             [0, 32 / 120, 0]])
  points = np.full((68, 2), -1, np.float32)
  points[36:42] = [40, 50]
  points[42:48] = [80, 50]
  points[48] = [60, 90]
  result = face.process_face(blank, points, face.FaceOptions(
      image_size=32, mode='aligned'))
  assert (result.source, result.face_found, result.aligned) == (
      'landmarks', True, True)
  np.testing.assert_allclose(result.landmarks[36], [0.35 * 32, 0.4 * 32],
                             atol=1e-3)
  with pytest.raises(ValueError, match='mode'):
    face.FaceOptions(mode='warp')


def test_detect_eyes_on_photo():
  image, matrix = faces.face_frame(300, 260, scale=0.5)
  box = face.detect_face(image)
  eyes = face.detect_eyes(image, box)
  assert eyes is not None
  expected = faces.PHOTO_EYES * 0.5 + matrix[:, 2]
  np.testing.assert_allclose(eyes, expected, atol=6)


def test_occurrence_csv_headers_and_codes(tmp_path):
  integer = tmp_path / 'F001_T1.csv'
  integer.write_text(','.join(map(str, range(100))) + '\n' +
                     ','.join(['7'] + ['9'] * 99) + '\n' +
                     ','.join(['8', '1', '0', '0', '1'] + ['0'] * 95) + '\n')
  frames_, occurrence, notes = labels.read_occurrence_csv(str(integer),
                                                          (1, 2, 4))
  np.testing.assert_array_equal(frames_, [7, 8])
  np.testing.assert_array_equal(occurrence, [[-1, -1, -1], [1, 0, 1]])
  assert not notes
  named = tmp_path / 'named.csv'
  named.write_text('Frame,AU01,AU4,AU12\n3,1,5,0\n')
  _, occurrence, notes = labels.read_occurrence_csv(str(named), (1, 2, 4, 12))
  np.testing.assert_array_equal(occurrence, [[1, -1, -1, 0]])
  assert notes == {'au_missing_from_header': 1, 'label_code_5_as_unknown': 1}
  bad = tmp_path / 'bad.csv'
  bad.write_text('Frame,AU01\n3,x\n')
  with pytest.raises(ValueError, match='bad.csv line 2'):
    labels.read_occurrence_csv(str(bad), (1,))


def test_unbc_facs_and_points_files(tmp_path):
  empty = tmp_path / 'a_facs.txt'
  empty.write_text('')
  occurrence, intensity, ignored = labels.read_unbc_facs(str(empty), (4, 43))
  assert occurrence.tolist() == [0, 0] and intensity.tolist() == [0, 0]
  full = tmp_path / 'b_facs.txt'
  full.write_text('   4.0000000e+00   3.0000000e+00   0.0000000e+00   0.0e+00\n'
                  '   4.3000000e+01   0.0000000e+00   0.0000000e+00   0.0e+00\n'
                  '   1.0000000e+00   2.0000000e+00   0.0000000e+00 0.0e+00\n')
  occurrence, intensity, ignored = labels.read_unbc_facs(str(full), (4, 43))
  assert occurrence.tolist() == [1, 1] and intensity.tolist() == [3, 0]
  assert ignored == [1]
  points = tmp_path / 'p.txt'
  points.write_text('  1.5e+01  2.0e+00\n  3.0e+00  4.5e+01\n')
  np.testing.assert_allclose(labels.read_points_text(str(points)),
                             [[15, 2], [3, 45]])
  lines = tmp_path / 'SN001_au1.txt'
  lines.write_text('1,0\n2,3\n3,5\n')
  frame_numbers, values = labels.read_frame_value_lines(str(lines))
  assert frame_numbers.tolist() == [1, 2, 3] and values.tolist() == [0, 3, 5]


def test_sorted_frames_reads_any_padding(tmp_path):
  for name in ('001.jpg', '0010.jpg', 'l0002_lm.jpg', 'notes.txt'):
    (tmp_path / name).write_bytes(b'')
  found = frame_reading.sorted_frames(str(tmp_path), ('.jpg',))
  assert list(found) == [1, 2, 10]
  with pytest.raises(FileNotFoundError, match='nowhere'):
    frame_reading.sorted_frames(str(tmp_path / 'nowhere'), ('.jpg',))


def test_video_frames_stream_and_missing(tmp_path):
  path = str(tmp_path / 'v.avi')
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 10,
                           (32, 24))
  for level in (0, 100, 200):
    writer.write(np.full((24, 32, 3), level, np.uint8))
  writer.release()
  means = [f.mean() for f in video.video_frames(path)]
  np.testing.assert_allclose(means, [0, 100, 200], atol=4)
  with pytest.raises(FileNotFoundError, match='missing.avi'):
    list(video.video_frames(str(tmp_path / 'missing.avi')))


@pytest.mark.parametrize('method', ['dis', 'tvl1'])
def test_optical_flow_recovers_a_shift(method):
  rng = np.random.default_rng(0)
  texture = cv2.GaussianBlur(rng.uniform(0, 255, (96, 96)), (0, 0), 2)
  texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
  previous = texture.astype(np.uint8)
  current = np.roll(previous, shift=(2, 3), axis=(0, 1))  # dy 2, dx 3.
  result = flow.optical_flow(previous, current, method)
  assert result.shape == (96, 96, 2)
  inner = result[16:-16, 16:-16].reshape(-1, 2)
  np.testing.assert_allclose(np.median(inner, axis=0), [3, 2], atol=0.3)


def test_flow_to_image_hand_computed():
  field = np.zeros((2, 2, 2), np.float32)
  field[0, 0] = [2, -1]  # D = 2: map x -> (x + 2) * 255 / 4.
  image = flow.flow_to_image(field)
  np.testing.assert_array_equal(image[0, 0], [255, 191, 255])  # B clips.
  np.testing.assert_array_equal(image[1, 1], [128, 128, 128])
  np.testing.assert_array_equal(flow.flow_to_image(field, False)[0, 0, 2],
                                128)
  small = np.full((1, 1, 2), 0.5, np.float32)  # D = 1 floor.
  np.testing.assert_array_equal(flow.flow_to_image(small)[0, 0],
                                [191, 64, 218])
