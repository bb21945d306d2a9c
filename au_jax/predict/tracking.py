"""Several faces per frame, each keeping its id across frames (for predict).

`au_jax.preprocess.face.locate_face` keeps only the largest face, which is
what the dataset builders need; predict needs every face and the same id for
the same person from frame to frame. The tracker here:

- scans the whole frame with the builders' detector (dlib's HOG or CNN
  detector, `au_jax.preprocess.landmark_detector`; OpenCV's Haar frontal-face
  cascade when dlib is not installed) every `full_scan_every` frames, at the
  same minimum face share;
- between full scans, re-detects each tracked face inside a window around its
  last box (the box enlarged by 40% of its side per side, scaled so the face
  is about the detector's window), so a re-detection costs a small fraction
  of a full scan;
- matches detections to tracks greedily by box overlap (intersection over
  union, IoU), highest first; a detection that overlaps no track starts a new
  id. A track that finds no detection gives no face for that frame (predict
  writes `success=0` rather than guess from an old box) but stays alive for
  `max_missing` frames, searched around its last box, so a face the detector
  misses for a moment comes back with its id. Ids are never reused within
  one input.

With dlib every face carries its 68 iBUG landmarks in frame pixels, and
`face_matrix` aligns by their eye centres (the builders' 'aligned' mode).

Confidence: dlib's detector score mapped to (0, 1) by the logistic
(`landmark_detector.confidence`: 0.5 at the detector's threshold, a ranking
score, not a calibrated probability); every Haar box gets
`face_lib.HAAR_CONFIDENCE` (0.5), because the cascade gives no usable score.
"""

import dataclasses

import cv2
import numpy as np

from au_jax.preprocess import face as face_lib
from au_jax.preprocess import landmark_detector

# Face side (pixels) at which a tracked face is re-detected with Haar; its
# window is 24 pixels, and 60 kept every test-media face while costing a
# quarter of a 100-pixel search. dlib instead scales the window so 0.75x
# the box side is its 80-pixel window (landmark_detector.detect).
_REDETECT_SIDE = 60.0


@dataclasses.dataclass(frozen=True)
class TrackerOptions:
  """How faces are found and followed.

  Attributes:
    detector: 'hog', 'cnn' or 'haar' (as FaceOptions.detector; dlib's fall
      back to Haar when the `faces` extra is absent).
    detect_max_side: Haar only: frames are scaled so their longer side is
      at most this before the full scan (as FaceOptions.detect_max_side).
    min_face_fraction: smallest face side of the full scan, as a share of
      the frame's shorter side (as FaceOptions).
    scale_factor: Haar pyramid step; 1.2 halves the time but missed 5 of
      16 synthetic_au faces that 1.1 found (tests/test_predict.py media).
      Haar only.
    full_scan_every: frames between whole-frame scans (1 = every frame);
      new faces appear at the next full scan.
    max_missing: frames a track stays alive (keeps its id) without a
      detection.
    min_iou: smallest box overlap that continues a track.
  """
  detector: str = 'hog'
  detect_max_side: int = 480
  min_face_fraction: float = 0.15
  scale_factor: float = 1.1
  full_scan_every: int = 5
  max_missing: int = 5
  min_iou: float = 0.3

  def __post_init__(self):
    if self.detector not in face_lib.DETECTORS:
      raise ValueError(f'TrackerOptions.detector must be one of '
                       f'{face_lib.DETECTORS}, got {self.detector!r}.')
    if self.full_scan_every < 1 or self.max_missing < 0:
      raise ValueError(
          f'TrackerOptions: full_scan_every={self.full_scan_every} must be '
          f'>= 1 and max_missing={self.max_missing} >= 0.')


@dataclasses.dataclass
class Face:
  """One tracked face in one frame.

  Attributes:
    face_id: stable id within an input (0, 1, ... in order of appearance,
      left to right among faces that appear in the same frame).
    box: [4] float64 (x, y, width, height) in frame pixels.
    confidence: detection score in (0, 1) (see module doc).
    landmarks: [68, 2] float32 iBUG-68 (x, y) in frame pixels from dlib's
      68-point model, or None when the detector gives none (Haar).
  """
  face_id: int
  box: np.ndarray
  confidence: float
  landmarks: np.ndarray | None = None


def _gray(image: np.ndarray) -> np.ndarray:
  return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _haar(gray: np.ndarray, scale_factor: float, min_side: int,
          max_side: int | None = None) -> np.ndarray:
  """Boxes [N, 4] float64 of a grey image."""
  kwargs = dict(scaleFactor=scale_factor, minNeighbors=5,
                minSize=(min_side, min_side))
  if max_side:
    kwargs['maxSize'] = (max_side, max_side)
  boxes = face_lib.haar_cascade(
      'haarcascade_frontalface_default.xml').detectMultiScale(gray, **kwargs)
  return np.asarray(boxes, np.float64).reshape(-1, 4)


def _no_landmarks(count: int) -> np.ndarray:
  return np.full((count, 68, 2), -1, np.float32)


def _dlib(image: np.ndarray, detector: str, min_side: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  found = landmark_detector.detect(image, detector, min_side)
  return (np.array([d.box for d in found]).reshape(-1, 4),
          np.array([d.confidence for d in found], np.float64),
          np.array([d.landmarks for d in found],
                   np.float32).reshape(-1, 68, 2))


def detect_faces(image: np.ndarray, options: TrackerOptions = TrackerOptions()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Every face of a frame.

  Args:
    image: [H, W, 3] uint8 BGR or [H, W] frame.
    options: detector and sizes.

  Returns:
    boxes [N, 4] float64 (x, y, w, h) in frame pixels, confidences [N],
    landmarks [N, 68, 2] float32 frame pixels (-1 without dlib).
  """
  detector = face_lib.detector_in_use(options.detector)
  if detector != 'haar':
    return _dlib(image, detector,
                 options.min_face_fraction * min(image.shape[:2]))
  gray = _gray(image)
  scale = min(1.0, options.detect_max_side / max(gray.shape))
  if scale < 1.0:
    gray = cv2.resize(gray, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA)
  min_side = max(20, int(options.min_face_fraction * min(gray.shape)))
  boxes = _haar(gray, options.scale_factor, min_side) / scale
  return (boxes, np.full(len(boxes), face_lib.HAAR_CONFIDENCE),
          _no_landmarks(len(boxes)))


def redetect(image: np.ndarray, box: np.ndarray,
             options: TrackerOptions = TrackerOptions()
             ) -> tuple[np.ndarray, float, np.ndarray] | None:
  """The face nearest `box` found in a window around it, or None.

  The window is the box enlarged by 40% of its side on each side, scaled so
  the face is ~`_REDETECT_SIDE` pixels, and only faces of 0.75x to 1.35x the
  box side are kept: a few pyramid levels of a small image instead of the
  whole frame.

  Returns:
    (box [4], confidence, landmarks [68, 2] frame pixels, -1 for Haar).
  """
  detector = face_lib.detector_in_use(options.detector)
  x, y, w, h = box
  side = max(w, h)
  left, top = int(max(0, x - 0.4 * side)), int(max(0, y - 0.4 * side))
  right = int(min(image.shape[1], x + w + 0.4 * side))
  bottom = int(min(image.shape[0], y + h + 0.4 * side))
  if bottom - top < 24 or right - left < 24:
    return None
  offset = np.array([left, top, 0, 0])
  if detector != 'haar':
    # Detection in the window (the frame is never resized whole), landmarks
    # on the frame at full resolution.
    found = landmark_detector.detect(image[top:bottom, left:right],
                                     detector, 0.75 * side,
                                     with_landmarks=False)
    boxes = np.array([d.box for d in found]).reshape(-1, 4) + offset
    confidences = np.array([d.confidence for d in found])
  else:
    window = _gray(image)[top:bottom, left:right]
    scale = min(1.0, _REDETECT_SIDE / side)
    if scale < 1.0:
      window = cv2.resize(window, None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_AREA)
    boxes = _haar(window, options.scale_factor,
                  max(24, int(0.75 * side * scale)),
                  int(1.35 * side * scale) + 1) / scale + offset
    confidences = np.full(len(boxes), face_lib.HAAR_CONFIDENCE)
  keep = (np.maximum(boxes[:, 2], boxes[:, 3]) <= 1.35 * side)
  boxes, confidences = boxes[keep], confidences[keep]
  if not len(boxes):
    return None
  best = int(np.argmax(iou(box[None], boxes)[0]))
  points = (landmark_detector.fit_landmarks(image, boxes[best])
            if detector != 'haar' else _no_landmarks(1)[0])
  return boxes[best], float(confidences[best]), points


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection over union of boxes.

  Args:
    a: [N, 4] (x, y, w, h).
    b: [M, 4] (x, y, w, h).

  Returns:
    [N, M] float64 in [0, 1].
  """
  a = np.asarray(a, np.float64).reshape(-1, 4)
  b = np.asarray(b, np.float64).reshape(-1, 4)
  x0 = np.maximum(a[:, None, 0], b[None, :, 0])
  y0 = np.maximum(a[:, None, 1], b[None, :, 1])
  x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
  y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  union = (a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3]
           - inter)
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(track_boxes: np.ndarray, boxes: np.ndarray,
          min_iou: float) -> list[tuple[int, int]]:
  """Greedy one-to-one (track, detection) pairs by IoU, highest first.

  Args:
    track_boxes: [T, 4]; boxes: [N, 4].
    min_iou: pairs overlapping less are not made.

  Returns:
    (track index, detection index) pairs.
  """
  overlap = iou(track_boxes, boxes)
  pairs = []
  while overlap.size and overlap.max() >= min_iou:
    t, d = np.unravel_index(np.argmax(overlap), overlap.shape)
    pairs.append((int(t), int(d)))
    overlap[t, :] = -1
    overlap[:, d] = -1
  return pairs


@dataclasses.dataclass
class _Track:
  face_id: int
  box: np.ndarray
  confidence: float
  landmarks: np.ndarray
  missing: int = 0

  def face(self) -> Face:
    present = (self.landmarks >= 0).all(axis=1).any()
    return Face(self.face_id, self.box.copy(), self.confidence,
                self.landmarks.copy() if present else None)


class FaceTracker:
  """Stateful per-input tracker: call `update` once per frame, in order."""

  def __init__(self, options: TrackerOptions = TrackerOptions()):
    self.options = options
    self._tracks: list[_Track] = []
    self._next_id = 0
    self._frame = 0

  def update(self, image: np.ndarray) -> list[Face]:
    """The faces of the next frame, sorted by face_id.

    Args:
      image: [H, W, 3] uint8 BGR frame.
    """
    options = self.options
    full_scan = (self._frame % options.full_scan_every == 0
                 or not self._tracks)
    self._frame += 1
    if full_scan:
      boxes, confidences, points = detect_faces(image, options)
    else:
      found = [redetect(image, track.box, options) for track in self._tracks]
      found = [f for f in found if f is not None]
      boxes = np.array([f[0] for f in found]).reshape(-1, 4)
      confidences = np.array([f[1] for f in found])
      points = np.array([f[2] for f in found], np.float32).reshape(-1, 68, 2)
    current = np.array([t.box for t in self._tracks]).reshape(-1, 4)
    pairs = match(current, boxes, options.min_iou)
    matched_tracks = {t for t, _ in pairs}
    matched_boxes = {d for _, d in pairs}
    faces = []
    for t, d in pairs:
      track = self._tracks[t]
      track.box, track.confidence, track.missing = boxes[d], float(
          confidences[d]), 0
      track.landmarks = points[d]
      faces.append(track.face())
    kept = [self._tracks[t] for t in sorted(matched_tracks)]
    for t, track in enumerate(self._tracks):
      if t in matched_tracks:
        continue
      track.missing += 1
      if track.missing <= options.max_missing:
        kept.append(track)
    # New faces get ids left to right, so ids do not depend on Haar's order.
    for d in np.argsort(boxes[:, 0], kind='stable'):
      if d in matched_boxes:
        continue
      # A detection overlapping a kept track is a duplicate, not a person.
      if kept and iou(boxes[d][None], np.array(
          [k.box for k in kept])).max() >= options.min_iou:
        continue
      track = _Track(self._next_id, boxes[d], float(confidences[d]),
                     points[d])
      self._next_id += 1
      kept.append(track)
      faces.append(track.face())
    self._tracks = kept
    return sorted(faces, key=lambda f: f.face_id)


def face_matrix(image: np.ndarray, box: np.ndarray,
                options: face_lib.FaceOptions,
                landmarks: np.ndarray | None = None) -> np.ndarray:
  """[2, 3] frame -> face-image transform, as the dataset builders make it.

  'crop': the box plus `options.margin` per side; 'aligned': eye-centre
  similarity from the face's 68 landmarks (Face.landmarks, frame pixels),
  else from the Haar eye cascade inside the box, falling back to the crop
  when both eyes are not found (as `face_lib.process_face` does).
  """
  if options.mode == 'aligned':
    eyes = (None if landmarks is None
            else face_lib.eyes_from_landmarks(landmarks))
    if eyes is None:
      eyes = face_lib.detect_eyes(image, box)
    if eyes is not None:
      return face_lib.align_matrix(eyes, options.image_size,
                                   options.eye_distance, options.eye_height)
  return face_lib.crop_matrix(box, options.image_size, options.margin)


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """[size, size, 3] face image through `matrix`, anti-aliased like the
  builders' (`face_lib._warp`: area pre-shrink before bilinear warp)."""
  return face_lib._warp(image, matrix, size)  # pylint: disable=protected-access
