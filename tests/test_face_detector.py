"""dlib face detection and 68 landmarks on real photographs, and the fallback.

The photographs ship inside the scikit-image wheel (skimage/data/*.png,
loaded without any download): astronaut (Eileen Collins, frontal) and camera
(the cameraman, face turned) have a human face; coffee, chelsea (a cat),
coins and rocket have none.
"""

import logging

import numpy as np
import pytest

from au_jax import aus
from au_jax import config_checks
from au_jax.predict import tracking
from au_jax.preprocess import face
from au_jax.preprocess import landmark_detector
from au_jax.preprocess import landmarks as landmarks_lib
from configs import lpnet

skimage_data = pytest.importorskip('skimage.data')
needs_dlib = pytest.mark.skipif(not landmark_detector.available(),
                                reason='the faces extra (dlib) is absent')
NO_FACE = ('coffee', 'chelsea', 'coins', 'rocket')


def photo(name: str) -> np.ndarray:
  """A scikit-image sample as a BGR (or grey) uint8 frame."""
  image = getattr(skimage_data, name)()
  return np.ascontiguousarray(image[..., ::-1] if image.ndim == 3 else image)


def min_side(image: np.ndarray) -> float:
  return 0.15 * min(image.shape[:2])  # FaceOptions.min_face_fraction.


def check_landmarks_in_box(found: landmark_detector.Detection) -> None:
  x, y, w, h = found.box
  margin = 0.15 * w  # dlib boxes are tight: the jaw may touch the edge.
  points = found.landmarks
  assert points.shape == (68, 2)
  assert ((points[:, 0] >= x - margin) & (points[:, 0] <= x + w + margin)
          ).all()
  assert ((points[:, 1] >= y - margin) & (points[:, 1] <= y + h + margin)
          ).all()
  # iBUG-68 order: the subject's right eye (36-41) is on the image's left,
  # the nose tip (30) below the eyes, the mouth (48-67) below the nose.
  right_eye, left_eye = points[36:42].mean(0), points[42:48].mean(0)
  assert right_eye[0] < points[30, 0] < left_eye[0]
  assert max(right_eye[1], left_eye[1]) < points[30, 1]
  assert points[30, 1] < points[48:68, 1].mean()


@needs_dlib
def test_hog_finds_the_astronaut_with_landmarks_and_outscores_false_boxes():
  image = photo('astronaut')
  # A lowered threshold also returns the detector's false candidates.
  found = landmark_detector.detect(image, 'hog', min_side(image),
                                   adjust_threshold=-1.0)
  faces = [f for f in found if f.score > 0]
  assert len(faces) == 1
  # The face box (checked by eye on an overlay): x 174-274, y 74-175.
  np.testing.assert_allclose(faces[0].box, [174, 74, 100, 101], atol=10)
  check_landmarks_in_box(faces[0])
  np.testing.assert_allclose(faces[0].landmarks[36:42].mean(0), [203, 101],
                             atol=4)
  np.testing.assert_allclose(faces[0].landmarks[42:48].mean(0), [247, 104],
                             atol=4)
  assert faces[0].confidence == pytest.approx(
      1 / (1 + np.exp(-faces[0].score)))
  false_boxes = [f for f in found if f.score <= 0]
  assert false_boxes  # The test would prove nothing without one.
  assert faces[0].confidence > 0.5 > max(f.confidence for f in false_boxes)


@needs_dlib
@pytest.mark.parametrize('name', NO_FACE)
def test_hog_finds_no_face_where_there_is_none(name):
  image = photo(name)
  assert landmark_detector.detect(image, 'hog', min_side(image)) == []


@needs_dlib
def test_cnn_finds_the_turned_face_hog_misses():
  image = photo('camera')
  assert not landmark_detector.detect(image, 'hog', min_side(image))
  found = landmark_detector.detect(image, 'cnn', min_side(image))
  assert len(found) == 1 and found[0].confidence > 0.5
  np.testing.assert_allclose(found[0].box, [180, 119, 77, 77], atol=10)
  check_landmarks_in_box(found[0])


@needs_dlib
def test_process_face_aligns_by_detected_landmarks():
  image = photo('astronaut')
  result = face.process_face(image, None, face.FaceOptions(
      image_size=100, mode='aligned'))
  assert (result.source, result.landmark_source, result.aligned) == (
      'hog', 'detector', True)
  assert result.confidence > 0.5
  # Eye centres land on the template: (0.5 -+ 0.15, 0.4) of the output.
  eyes = face.eyes_from_landmarks(result.landmarks)
  np.testing.assert_allclose(eyes, [[35, 40], [65, 40]], atol=0.5)
  blank = face.process_face(np.full((120, 160, 3), 90, np.uint8), None,
                            face.FaceOptions(image_size=32))
  assert (blank.source, blank.landmark_source, blank.confidence) == (
      'centre', 'none', 0.0)
  assert (blank.landmarks == -1).all()


@needs_dlib
def test_tracker_faces_carry_landmarks_and_aligned_crops_use_them():
  image = photo('astronaut')
  tracker = tracking.FaceTracker(tracking.TrackerOptions(full_scan_every=2))
  for step in range(3):  # Full scan, window re-detection, full scan.
    faces = tracker.update(np.roll(image, 4 * step, axis=1))
    assert [f.face_id for f in faces] == [0]
    assert faces[0].confidence > 0.5
    check_landmarks_in_box(landmark_detector.Detection(
        faces[0].box, 0.0, faces[0].confidence, faces[0].landmarks))
  options = face.FaceOptions(image_size=100, mode='aligned')
  matrix = tracking.face_matrix(image, faces[0].box, options,
                                faces[0].landmarks)
  eyes = face.eyes_from_landmarks(
      face.transform_points(faces[0].landmarks, matrix))
  np.testing.assert_allclose(eyes, [[35, 40], [65, 40]], atol=0.5)


def test_haar_fallback_logs_once_and_has_fixed_confidence(monkeypatch,
                                                          caplog):
  monkeypatch.setattr(landmark_detector, 'dlib', None)
  landmark_detector.log_fallback.cache_clear()
  image = photo('astronaut')
  with caplog.at_level(logging.WARNING):
    for _ in range(2):
      boxes, confidences, points = tracking.detect_faces(image)
      result = face.process_face(image, None, face.FaceOptions(image_size=32))
  lines = [r.getMessage() for r in caplog.records
           if 'unavailable' in r.getMessage()]
  assert len(lines) == 1 and 'dlib is not installed' in lines[0]
  assert len(boxes) == 1
  np.testing.assert_array_equal(confidences, [face.HAAR_CONFIDENCE])
  assert (points == -1).all()
  assert (result.source, result.landmark_source) == ('haar', 'none')
  assert result.confidence == face.HAAR_CONFIDENCE
  with pytest.raises(ImportError, match='dlib is not installed'):
    landmark_detector.detect(image)
  landmark_detector.log_fallback.cache_clear()


def test_config_check_refuses_pnet_on_a_dataset_without_landmarks(
    monkeypatch):
  config = lpnet.get_config('test')  # Its 'pnet' stage sets use_pnet.
  config_checks.check_config(config)  # synthetic_au has landmarks.
  monkeypatch.delitem(landmarks_lib.DATASET_LANDMARKS, config.dataset)
  with pytest.raises(ValueError, match=(
      r"use_pnet=True is invalid.*dataset 'synthetic_au' records have no "
      'landmarks')):
    config_checks.check_config(config)
  monkeypatch.setitem(landmarks_lib.DATASET_LANDMARKS, config.dataset,
                      'detector')
  config_checks.check_config(config)


def test_every_dataset_declares_its_landmarks():
  assert set(landmarks_lib.DATASET_LANDMARKS) == set(aus.DATASET_AUS)
  assert set(landmarks_lib.DATASET_LANDMARKS.values()) <= {
      'release', 'detector', 'rendered'}
