"""Several faces per frame, each keeping its id across frames (for predict).

`au_jax.preprocess.face.detect_face` keeps only the largest face, which is
what the dataset builders need; predict needs every face and the same id for
the same person from frame to frame. The tracker here:

- scans the whole frame with OpenCV's Haar frontal-face cascade (the
  builders' detector, same pyramid step and minimum face share) every
  `full_scan_every` frames;
- between full scans, re-detects each tracked face inside a window around its
  last box (1.8x the box side, searched at ~60 pixels per face, so a
  re-detection costs a small fraction of a full scan);
- matches detections to tracks greedily by box overlap (intersection over
  union, IoU), highest first; a detection that overlaps no track starts a new
  id. A track that finds no detection gives no face for that frame (predict
  writes `success=0` rather than guess from an old box) but stays alive for
  `max_missing` frames, searched around its last box, so a face the detector
  misses for a moment comes back with its id. Ids are never reused within
  one input.

Confidence: the Haar cascade gives no probability. We report the logistic of
the cascade's last-stage weight (`detectMultiScale3`), a monotone ranking
score in (0, 1), not a calibrated probability.
"""

import dataclasses

import cv2
import numpy as np

from au_jax.preprocess import face as face_lib

# Face side (pixels) at which a tracked face is re-detected; Haar's window
# is 24 pixels, and 60 kept every test-media face while costing a quarter
# of a 100-pixel search.
_REDETECT_SIDE = 60.0


@dataclasses.dataclass(frozen=True)
class TrackerOptions:
  """How faces are found and followed.

  Attributes:
    detect_max_side: frames are scaled so their longer side is at most this
      before the full scan (as FaceOptions.detect_max_side).
    min_face_fraction: smallest face side of the full scan, as a share of
      the scaled frame's shorter side (as FaceOptions).
    scale_factor: Haar pyramid step; 1.2 halves the time but missed 5 of
      16 synthetic_au faces that 1.1 found (tests/test_predict.py media).
    full_scan_every: frames between whole-frame scans (1 = every frame);
      new faces appear at the next full scan.
    max_missing: frames a track stays alive (keeps its id) without a
      detection.
    min_iou: smallest box overlap that continues a track.
  """
  detect_max_side: int = 480
  min_face_fraction: float = 0.15
  scale_factor: float = 1.1
  full_scan_every: int = 5
  max_missing: int = 5
  min_iou: float = 0.3

  def __post_init__(self):
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
  """
  face_id: int
  box: np.ndarray
  confidence: float


def _gray(image: np.ndarray) -> np.ndarray:
  return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _haar(gray: np.ndarray, scale_factor: float, min_side: int,
          max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Boxes [N, 4] float64 and confidences [N] of a grey image."""
  kwargs = dict(scaleFactor=scale_factor, minNeighbors=5,
                minSize=(min_side, min_side), outputRejectLevels=True)
  if max_side:
    kwargs['maxSize'] = (max_side, max_side)
  boxes, _, weights = face_lib.haar_cascade(
      'haarcascade_frontalface_default.xml').detectMultiScale3(gray, **kwargs)
  if len(boxes) == 0:
    return np.zeros((0, 4)), np.zeros((0,))
  weights = np.asarray(weights, np.float64).reshape(-1)
  return (np.asarray(boxes, np.float64).reshape(-1, 4),
          1.0 / (1.0 + np.exp(-weights)))


def detect_faces(image: np.ndarray, options: TrackerOptions = TrackerOptions()
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Every Haar frontal face of a frame.

  Args:
    image: [H, W, 3] BGR (or RGB) or [H, W] uint8 frame.
    options: detection sizes.

  Returns:
    boxes [N, 4] float64 (x, y, w, h) in frame pixels, confidences [N].
  """
  gray = _gray(image)
  scale = min(1.0, options.detect_max_side / max(gray.shape))
  if scale < 1.0:
    gray = cv2.resize(gray, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA)
  min_side = max(20, int(options.min_face_fraction * min(gray.shape)))
  boxes, confidences = _haar(gray, options.scale_factor, min_side)
  return boxes / scale, confidences


def redetect(image: np.ndarray, box: np.ndarray,
             options: TrackerOptions = TrackerOptions()
             ) -> tuple[np.ndarray, float] | None:
  """The face nearest `box` found in a window around it, or None.

  The window is the box enlarged by 40% of its side on each side, scaled so
  the face is ~`_REDETECT_SIDE` pixels, and only faces of 0.75x to 1.35x the
  box side are searched: a few pyramid levels of a ~110-pixel image instead
  of the whole frame.
  """
  gray = _gray(image)
  x, y, w, h = box
  side = max(w, h)
  left, top = int(max(0, x - 0.4 * side)), int(max(0, y - 0.4 * side))
  right = int(min(gray.shape[1], x + w + 0.4 * side))
  bottom = int(min(gray.shape[0], y + h + 0.4 * side))
  window = gray[top:bottom, left:right]
  if window.shape[0] < 24 or window.shape[1] < 24:
    return None
  scale = min(1.0, _REDETECT_SIDE / side)
  if scale < 1.0:
    window = cv2.resize(window, None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_AREA)
  boxes, confidences = _haar(window, options.scale_factor,
                             max(24, int(0.75 * side * scale)),
                             int(1.35 * side * scale) + 1)
  if not len(boxes):
    return None
  boxes = boxes / scale + np.array([left, top, 0, 0])
  best = int(np.argmax(iou(box[None], boxes)[0]))
  return boxes[best], float(confidences[best])


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
  missing: int = 0


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
      boxes, confidences = detect_faces(image, options)
    else:
      found = [redetect(image, track.box, options) for track in self._tracks]
      found = [f for f in found if f is not None]
      boxes = np.array([f[0] for f in found]).reshape(-1, 4)
      confidences = np.array([f[1] for f in found])
    current = np.array([t.box for t in self._tracks]).reshape(-1, 4)
    pairs = match(current, boxes, options.min_iou)
    matched_tracks = {t for t, _ in pairs}
    matched_boxes = {d for _, d in pairs}
    faces = []
    for t, d in pairs:
      track = self._tracks[t]
      track.box, track.confidence, track.missing = boxes[d], float(
          confidences[d]), 0
      faces.append(Face(track.face_id, track.box.copy(), track.confidence))
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
      track = _Track(self._next_id, boxes[d], float(confidences[d]))
      self._next_id += 1
      kept.append(track)
      faces.append(Face(track.face_id, track.box.copy(), track.confidence))
    self._tracks = kept
    return sorted(faces, key=lambda f: f.face_id)


def face_matrix(image: np.ndarray, box: np.ndarray,
                options: face_lib.FaceOptions) -> np.ndarray:
  """[2, 3] frame -> face-image transform, as the dataset builders make it.

  'crop': the box plus `options.margin` per side; 'aligned': eye-centre
  similarity from the Haar eye cascade inside the box, falling back to the
  crop when both eyes are not found (as `face_lib.process_face` does).
  """
  if options.mode == 'aligned':
    eyes = face_lib.detect_eyes(image, box)
    if eyes is not None:
      return face_lib.align_matrix(eyes, options.image_size,
                                   options.eye_distance, options.eye_height)
  return face_lib.crop_matrix(box, options.image_size, options.margin)


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """[size, size, 3] face image through `matrix`, anti-aliased like the
  builders' (`face_lib._warp`: area pre-shrink before bilinear warp)."""
  return face_lib._warp(image, matrix, size)  # pylint: disable=protected-access
