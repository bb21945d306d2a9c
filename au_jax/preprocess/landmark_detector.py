"""Face boxes, detector scores and iBUG-68 landmarks from dlib's models.

An optional dependency (the `faces` extra): `dlib-bin` (binary wheels of
dlib) runs the models that the `face-recognition-models` wheel ships, so
nothing is downloaded at run time:

- 'hog': dlib's frontal face detector (HOG features + linear SVM, five
  sub-detectors for frontal and slightly turned faces). ~0.1 s a 640x480
  frame on one CPU core; frontal faces only.
- 'cnn': dlib's MMOD CNN (`mmod_human_face_detector.dat`). ~1 s a 512x512
  frame on one CPU core; also finds turned faces the HOG detector misses
  (scikit-image's cameraman, tests/test_face_detector.py).
- landmarks: `shape_predictor_68_face_landmarks.dat`, an ensemble of
  regression trees trained on iBUG-300W, so the points are in the iBUG-68
  order au_jax records use (au_jax/preprocess/landmarks.py) and OpenFace's
  x_0..x_67, y_0..y_67 columns name.

Both detectors find faces of about 80x80 pixels and up, so a frame is
scaled to put the smallest face searched at 80 pixels (`WINDOW`); the
landmarks are then fitted on the frame itself, at full resolution.

Confidence: both detectors output a margin score (SVM / MMOD), positive for a
face, with 0 as their own detection threshold. We report
`confidence = 1 / (1 + exp(-score))`: 0.5 at the threshold, above it for
every returned face, monotone in the score, so faces can be ranked and
thresholded; it is not a calibrated probability, and the two detectors'
scores are not on one scale.
"""

import dataclasses
import functools
import importlib.util
import os

from absl import logging
import cv2
import numpy as np

try:
  import dlib  # Optional: the `faces` extra (dlib-bin).
except ImportError:
  dlib = None

DETECTORS = ('hog', 'cnn')
# Side in pixels of the smallest face both dlib detectors find (their
# sliding window).
WINDOW = 80
NUM_LANDMARKS = 68
_MODEL_PACKAGE = 'face_recognition_models'
_MODELS = {'cnn': 'mmod_human_face_detector.dat',
           'landmarks': 'shape_predictor_68_face_landmarks.dat'}


@dataclasses.dataclass(frozen=True)
class Detection:
  """One detected face.

  Attributes:
    box: [4] float64 (x, y, width, height) in image pixels.
    score: the detector's margin (0 at its detection threshold).
    confidence: `confidence(score)`, in (0, 1).
    landmarks: [68, 2] float32 iBUG-68 (x, y) in image pixels.
  """
  box: np.ndarray
  score: float
  confidence: float
  landmarks: np.ndarray


def confidence(score: float | np.ndarray) -> float | np.ndarray:
  """A detector margin mapped to (0, 1): the logistic, 0.5 at threshold."""
  return 1.0 / (1.0 + np.exp(-np.asarray(score, np.float64)))


def model_path(name: str) -> str | None:
  """Path of a model file of the `face-recognition-models` wheel, or None.

  The package is located without importing it: its __init__ needs
  `pkg_resources`, which recent setuptools no longer ships.
  """
  spec = importlib.util.find_spec(_MODEL_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  for folder in spec.submodule_search_locations:
    path = os.path.join(folder, 'models', name)
    if os.path.isfile(path):
      return path
  return None


def missing() -> str | None:
  """Why dlib detection is unavailable (None when it is available)."""
  if dlib is None:
    return 'dlib is not installed (pip install dlib-bin)'
  for name in _MODELS.values():
    if model_path(name) is None:
      return (f'{_MODEL_PACKAGE} has no models/{name} (pip install '
              'face-recognition-models)')
  return None


def available() -> bool:
  """True when dlib and the model files are installed."""
  return missing() is None


@functools.lru_cache(maxsize=None)
def log_fallback(wanted: str) -> None:
  """Logs once per detector name that the Haar cascade replaces it."""
  logging.warning('Face detector %r unavailable: %s; using the OpenCV Haar '
                  'cascade (no landmarks). Install au_jax[faces].', wanted,
                  missing())


def _require() -> None:
  reason = missing()
  if reason is not None:
    raise ImportError(f'dlib face detection unavailable: {reason}.')


@functools.lru_cache(maxsize=None)
def _hog_detector():
  return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
  return dlib.cnn_face_detection_model_v1(model_path(_MODELS['cnn']))


@functools.lru_cache(maxsize=None)
def _shape_predictor():
  return dlib.shape_predictor(model_path(_MODELS['landmarks']))


def _rgb(image: np.ndarray) -> np.ndarray:
  """[H, W, 3] RGB uint8 contiguous copy of a BGR or grey frame."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'Face detection needs a uint8 image, got '
                     f'{image.dtype}.')
  if image.ndim == 2:
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'Face detection needs [H, W, 3] or [H, W] images, '
                     f'got shape {image.shape}.')
  return np.ascontiguousarray(image[..., ::-1])


def _raw_detections(rgb: np.ndarray, detector: str, adjust_threshold: float
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Boxes [N, 4] (x, y, w, h) and scores [N] of one RGB image."""
  if detector == 'hog':
    rects, scores, _ = _hog_detector().run(rgb, 0, adjust_threshold)
  elif detector == 'cnn':
    # The CNN's Python API has no threshold argument: it returns score > 0.
    found = _cnn_detector()(rgb, 0)
    rects = [f.rect for f in found]
    scores = [f.confidence for f in found]
  else:
    raise ValueError(f'Unknown face detector {detector!r}; expected one of '
                     f'{DETECTORS}.')
  boxes = np.array([[r.left(), r.top(), r.width(), r.height()]
                    for r in rects], np.float64).reshape(-1, 4)
  return boxes, np.asarray(scores, np.float64).reshape(-1)


def fit_landmarks(image: np.ndarray, box: np.ndarray) -> np.ndarray:
  """iBUG-68 points of the face in `box`.

  Args:
    image: [H, W, 3] uint8 BGR or [H, W] grey frame.
    box: [4] (x, y, w, h) face box in `image` pixels (a dlib detector's).

  Returns:
    [68, 2] float32 (x, y) in `image` pixels (dlib rounds to whole pixels).
  """
  _require()
  return _fit(_rgb(image), box)


def _fit(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
  x, y, w, h = (int(round(v)) for v in box)
  shape = _shape_predictor()(rgb, dlib.rectangle(x, y, x + w, y + h))
  return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


def detect(image: np.ndarray, detector: str = 'hog',
           min_face_side: float = WINDOW, adjust_threshold: float = 0.0,
           with_landmarks: bool = True) -> list[Detection]:
  """Every face dlib finds in a frame, highest score first.

  Args:
    image: [H, W, 3] uint8 BGR (OpenCV's order) or [H, W] grey frame.
    detector: 'hog' or 'cnn' (module doc).
    min_face_side: smallest face side to find, in `image` pixels; the frame
      is scaled by WINDOW / min_face_side for detection (up or down).
    adjust_threshold: added to the HOG threshold; negative values also
      return weaker candidates (score < 0, confidence < 0.5). The CNN
      ignores it.
    with_landmarks: False skips the 68-point fit (landmarks all -1).

  Returns:
    Detections in `image` pixels.

  Raises:
    ImportError: naming the missing package when dlib is unavailable.
  """
  _require()
  if detector not in DETECTORS:
    raise ValueError(f'Unknown face detector {detector!r}; expected one of '
                     f'{DETECTORS}.')
  rgb = _rgb(image)
  scale = WINDOW / max(float(min_face_side), 1.0)
  small = rgb
  if abs(scale - 1.0) > 1e-3:
    small = cv2.resize(rgb, None, fx=scale, fy=scale,
                       interpolation=(cv2.INTER_AREA if scale < 1
                                      else cv2.INTER_LINEAR))
  boxes, scores = _raw_detections(small, detector, adjust_threshold)
  boxes = boxes / scale
  detections = []
  for index in np.argsort(-scores, kind='stable'):
    points = (_fit(rgb, boxes[index]) if with_landmarks else
              np.full((NUM_LANDMARKS, 2), -1, np.float32))
    detections.append(Detection(
        box=boxes[index], score=float(scores[index]),
        confidence=float(confidence(scores[index])), landmarks=points))
  return detections
