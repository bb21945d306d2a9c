"""Face detection, cropping and eye-based alignment of video frames.

Every output is a similarity transform `M` ([2, 3], image -> crop pixels)
applied with `cv2.warpAffine`, so a crop and an aligned face are the same
operation and landmarks follow the image exactly (`transform_points`).

- Detection: dlib's HOG (default) or CNN face detector with its 68-point
  landmark model (`landmark_detector`, the optional `faces` extra). Without
  it, OpenCV's Viola-Jones Haar cascade, as the CAUD thesis
  (caud_thesis.txt 5.1.5) pre-processes BP4D, on a copy scaled to at most
  `detect_max_side` pixels (Haar time grows with image area and BP4D frames
  are 1040x1392); one log line says so.
- Crop: a square box around the detection enlarged by `margin` on each side.
- Alignment: rotate so the eye centres are level and scale so their distance
  is a fixed share of the output (LP-Net, lpnet_cvpr2019.txt sec. 3.2 and 4.1,
  aligns "based on the two eye centers"). LP-Net takes the eyes from 68 CE-CLM
  landmarks; we take them from dataset landmarks when present, else from the
  detector's 68 landmarks, else (Haar only) from a Haar eye cascade. The template (eye midpoint at (0.5, 0.4) of the output, eye
  distance 0.3 of its width) is ours: the paper does not give one.
"""

import dataclasses
import functools

import cv2
import numpy as np

from au_jax.preprocess import landmark_detector

# iBUG-68 indices of the eye contours (0-based): right eye 36-41, left 42-47
# (subject's right eye is on the image's left).
IBUG_RIGHT_EYE = tuple(range(36, 42))
IBUG_LEFT_EYE = tuple(range(42, 48))
_EYE_SEARCH_WIDTHS = (160, 120, 200)
DETECTORS = ('hog', 'cnn', 'haar')
# Confidence of every Haar box. The cascade only accepts or rejects: its
# last-stage weight is no face score (it marks six coins of scikit-image's
# coins.png as faces at weights whose logistic is 0.88-0.97, as high as a
# real face), so all Haar boxes get the value a dlib score maps to at its
# own threshold: "found, no further evidence".
HAAR_CONFIDENCE = 0.5


@dataclasses.dataclass(frozen=True)
class FaceOptions:
  """How a frame becomes a face image.

  Attributes:
    image_size: output side S in pixels (square).
    mode: 'crop' (detected box + margin) or 'aligned' (eye-centre similarity).
    detector: 'hog' or 'cnn' (dlib, with 68 landmarks; module
      `landmark_detector`) or 'haar' (OpenCV, no landmarks). dlib's
      detectors fall back to Haar when the `faces` extra is absent.
    margin: share of the detected box side added on every side of a crop.
    detect_max_side: frames are scaled so their longer side is at most this
      before Haar detection (coordinates are mapped back). dlib instead
      scales the frame so the smallest face is its 80-pixel window.
    min_face_fraction: smallest face side searched for, as a share of the
      frame's shorter side.
    scale_factor: Haar pyramid step. 1.2 halves detection time (measured
      ~70 -> ~40 ms on a 1392x1040 frame here, noisy shared CPU) at a
      coarser box; 1.1 is OpenCV's usual value.
    eye_distance: aligned mode, eye-centre distance as a share of S.
    eye_height: aligned mode, height of the eye midpoint as a share of S.
  """
  image_size: int = 256
  mode: str = 'crop'
  detector: str = 'hog'
  margin: float = 0.2
  detect_max_side: int = 480
  min_face_fraction: float = 0.15
  scale_factor: float = 1.1
  eye_distance: float = 0.3
  eye_height: float = 0.4

  def __post_init__(self):
    if self.mode not in ('crop', 'aligned'):
      raise ValueError(f"FaceOptions.mode must be 'crop' or 'aligned', got "
                       f'{self.mode!r}.')
    if self.detector not in DETECTORS:
      raise ValueError(f'FaceOptions.detector must be one of {DETECTORS}, '
                       f'got {self.detector!r}.')
    if self.image_size < 8:
      raise ValueError(f'FaceOptions.image_size {self.image_size} < 8.')


@dataclasses.dataclass
class FaceResult:
  """A processed frame.

  Attributes:
    image: [S, S, 3] uint8, same channel order as the input.
    landmarks: [68, 2] float32 (x, y) in `image` pixels, -1 where absent.
    face_found: False when neither a detector nor landmarks located a face
      (the image is then a centre crop of the frame).
    source: how the face was located: 'hog', 'cnn', 'haar' (detectors),
      'landmarks' (the dataset's points) or 'centre'.
    landmark_source: 'dataset' (given by the caller), 'detector' (dlib's
      68-point fit) or 'none' (all -1).
    confidence: the detector's confidence (`landmark_detector.confidence`,
      HAAR_CONFIDENCE for Haar); 0 when no detector found the face.
    aligned: True when eye alignment was applied.
    matrix: [2, 3] float64 frame -> image similarity transform.
  """
  image: np.ndarray
  landmarks: np.ndarray
  face_found: bool
  source: str
  aligned: bool
  matrix: np.ndarray
  landmark_source: str = 'none'
  confidence: float = 0.0


@functools.lru_cache(maxsize=None)
def haar_cascade(name: str) -> cv2.CascadeClassifier:
  """One of OpenCV's bundled Haar cascades (loaded once), e.g.
  'haarcascade_frontalface_default.xml'; a clear error if it is missing."""
  path = cv2.data.haarcascades + name
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise FileNotFoundError(
        f'OpenCV Haar cascade {path} is missing; opencv 5.x wheels ship none: '
        'install opencv-contrib-python-headless 4.x.')
  return cascade


def _gray(image: np.ndarray) -> np.ndarray:
  if image.ndim == 2:
    return image
  return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def detect_face(image: np.ndarray, max_side: int = 480,
                min_face_fraction: float = 0.15,
                scale_factor: float = 1.1) -> np.ndarray | None:
  """The largest Haar frontal face in `image` (no landmarks, no score).

  Args:
    image: [H, W, 3] (BGR or RGB: Haar uses grey levels) or [H, W] uint8.
    max_side: detection runs on a copy scaled to this longer side.
    min_face_fraction: smallest face side as a share of the shorter side.
    scale_factor: Haar pyramid step.

  Returns:
    [4] float64 box (x, y, w, h) in `image` pixels, or None.
  """
  gray = _gray(image)
  scale = min(1.0, max_side / max(gray.shape))
  if scale < 1.0:
    gray = cv2.resize(gray, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA)
  min_side = max(20, int(min_face_fraction * min(gray.shape)))
  boxes = haar_cascade('haarcascade_frontalface_default.xml').detectMultiScale(
      gray, scaleFactor=scale_factor, minNeighbors=5,
      minSize=(min_side, min_side))
  if len(boxes) == 0:
    return None
  largest = max(boxes, key=lambda b: b[2] * b[3])
  return np.asarray(largest, np.float64) / scale


def detect_eyes(image: np.ndarray,
                face_box: np.ndarray) -> np.ndarray | None:
  """Eye centres inside a face box from the Haar eye cascade.

  The upper face is resized to 160, then 120, then 200 pixels wide (the
  cascade's hit rate on a test photo depends on that width) and the best
  left/right pair is kept: level within 0.15 face widths and 0.2-0.7 face
  widths apart.

  Args:
    image: [H, W, 3] or [H, W] uint8 frame.
    face_box: [4] (x, y, w, h) from `detect_face`.

  Returns:
    [2, 2] float64 (x, y) of the eye on the image's left then right, or None.
  """
  x, y, w, h = face_box
  top, bottom = int(y + 0.1 * h), int(y + 0.6 * h)
  left, right = int(max(x, 0)), int(x + w)
  roi = _gray(image)[max(top, 0):bottom, left:right]
  if roi.size == 0:
    return None
  for width in _EYE_SEARCH_WIDTHS:
    eyes = _eye_pair(roi, width, left, max(top, 0), x + w / 2, w)
    if eyes is not None:
      return eyes
  return None


def _eye_pair(roi, width, left, top, middle, w):
  """Best eye pair of `roi` searched at `width` pixels, frame coords."""
  zoom = width / roi.shape[1]
  found = haar_cascade('haarcascade_eye.xml').detectMultiScale(
      cv2.resize(roi, None, fx=zoom, fy=zoom), scaleFactor=1.1,
      minNeighbors=3, minSize=(width // 10, width // 10))
  centres = [(left + (a + s / 2) / zoom, top + (b + s / 2) / zoom, s)
             for a, b, s, _ in found]
  best = None
  for lx, ly, ls in (c for c in centres if c[0] < middle):
    for rx, ry, rs in (c for c in centres if c[0] >= middle):
      if abs(ly - ry) > 0.15 * w or not 0.2 * w <= rx - lx <= 0.7 * w:
        continue
      if best is None or ls * rs > best[0]:
        best = (ls * rs, ((lx, ly), (rx, ry)))
  return None if best is None else np.asarray(best[1], np.float64)


def eyes_from_landmarks(landmarks: np.ndarray) -> np.ndarray | None:
  """[2, 2] eye centres (image left, image right) from iBUG-68 landmarks."""
  pair = []
  for indices in (IBUG_RIGHT_EYE, IBUG_LEFT_EYE):
    points = landmarks[list(indices)]
    points = points[(points >= 0).all(axis=1)]
    if not len(points):
      return None
    pair.append(points.mean(axis=0))
  return np.asarray(pair, np.float64)


def landmark_box(landmarks: np.ndarray) -> np.ndarray | None:
  """[4] (x, y, w, h) square-ish box of the present landmarks, or None.

  Landmarks start at the brows, so the box is extended upwards by 20% of its
  height to cover the forehead a Haar box includes.
  """
  points = landmarks[(landmarks >= 0).all(axis=1)]
  if len(points) < 3:
    return None
  x0, y0 = points.min(axis=0)
  x1, y1 = points.max(axis=0)
  y0 -= 0.2 * (y1 - y0)
  return np.array([x0, y0, x1 - x0, y1 - y0], np.float64)


def crop_matrix(box: np.ndarray, size: int, margin: float) -> np.ndarray:
  """[2, 3] transform mapping a square around `box` (+margin) to [0, size)."""
  x, y, w, h = box
  side = max(w, h) * (1 + 2 * margin)
  scale = size / side
  cx, cy = x + w / 2, y + h / 2
  return np.array([[scale, 0, size / 2 - scale * cx],
                   [0, scale, size / 2 - scale * cy]], np.float64)


def align_matrix(eyes: np.ndarray, size: int, eye_distance: float = 0.3,
                 eye_height: float = 0.4) -> np.ndarray:
  """[2, 3] similarity putting the eyes level at a fixed place and distance.

  Args:
    eyes: [2, 2] (x, y) of the eye on the image's left, then right.
    size: output side S.
    eye_distance, eye_height: template as shares of S (see module doc).
  """
  (lx, ly), (rx, ry) = eyes
  angle = np.arctan2(ry - ly, rx - lx)
  scale = eye_distance * size / max(np.hypot(rx - lx, ry - ly), 1e-6)
  cos, sin = scale * np.cos(-angle), scale * np.sin(-angle)
  mx, my = (lx + rx) / 2, (ly + ry) / 2
  # Rotation by -angle scaled, then move the eye midpoint to the template.
  return np.array([[cos, -sin, size / 2 - (cos * mx - sin * my)],
                   [sin, cos, eye_height * size - (sin * mx + cos * my)]],
                  np.float64)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """[N, 2] points mapped by a [2, 3] matrix; rows with a -1 stay -1."""
  points = np.asarray(points, np.float64)
  out = points @ matrix[:, :2].T + matrix[:, 2]
  out[(points < 0).any(axis=1)] = -1
  return out.astype(np.float32)


def centre_matrix(height: int, width: int, size: int) -> np.ndarray:
  """[2, 3] transform of the largest centred square to [0, size)."""
  side = min(height, width)
  return crop_matrix(np.array([(width - side) / 2, (height - side) / 2,
                               side, side]), size, 0.0)


@dataclasses.dataclass
class LocatedFace:
  """The largest face of a frame as a detector reports it.

  Attributes:
    box: [4] float64 (x, y, w, h) in frame pixels.
    confidence: in (0, 1) (FaceResult.confidence).
    landmarks: [68, 2] float32 iBUG-68 frame pixels, or None (Haar).
    source: the detector that ran: 'hog', 'cnn' or 'haar'.
  """
  box: np.ndarray
  confidence: float
  landmarks: np.ndarray | None
  source: str


def detector_in_use(wanted: str) -> str:
  """`wanted`, or 'haar' (logged once) when dlib's models are missing."""
  if wanted != 'haar' and not landmark_detector.available():
    landmark_detector.log_fallback(wanted)
    return 'haar'
  return wanted


def locate_face(image: np.ndarray, options: FaceOptions) -> LocatedFace | None:
  """The largest face of `image` by `options.detector`, or None.

  Args:
    image: [H, W, 3] uint8 BGR or [H, W] frame.
    options: detector and search sizes.
  """
  detector = detector_in_use(options.detector)
  if detector == 'haar':
    box = detect_face(image, options.detect_max_side,
                      options.min_face_fraction, options.scale_factor)
    return None if box is None else LocatedFace(box, HAAR_CONFIDENCE, None,
                                                'haar')
  min_side = options.min_face_fraction * min(image.shape[:2])
  found = landmark_detector.detect(image, detector, min_side,
                                   with_landmarks=False)
  if not found:
    return None
  largest = max(found, key=lambda d: d.box[2] * d.box[3])
  return LocatedFace(largest.box, largest.confidence,
                     landmark_detector.fit_landmarks(image, largest.box),
                     detector)


def process_face(image: np.ndarray, landmarks: np.ndarray | None,
                 options: FaceOptions) -> FaceResult:
  """Detects, crops or aligns, and resizes one frame.

  The face box comes from the detector; where it misses and the dataset
  gives landmarks, from the landmarks; else the frame's centre square is used
  and `face_found` is False. The stored landmarks are the dataset's when
  given, else the detector's 68 points (dlib), else all -1. In 'aligned'
  mode the eyes come from those landmarks, else (Haar) the Haar eye cascade;
  when neither gives both eyes the frame falls back to the crop (`aligned`
  False) so the caller can count it.

  Args:
    image: [H, W, 3] uint8 BGR frame.
    landmarks: [68, 2] iBUG-68 (x, y) frame pixels, -1 absent; or None.
    options: FaceOptions.

  Returns:
    FaceResult; its landmarks are [68, 2] in the output image's pixels.
  """
  given = landmarks is not None and bool((landmarks >= 0).all(axis=1).any())
  located = locate_face(image, options)
  if given:
    landmark_source = 'dataset'
  elif located is not None and located.landmarks is not None:
    landmarks, landmark_source = located.landmarks, 'detector'
  else:
    landmarks = np.full((68, 2), -1, np.float32)
    landmark_source = 'none'
  size = options.image_size
  box, source, confidence = None, 'centre', 0.0
  if located is not None:
    box, source, confidence = located.box, located.source, located.confidence
  else:
    box = landmark_box(landmarks)
    source = 'centre' if box is None else 'landmarks'
  if box is None:
    matrix = centre_matrix(image.shape[0], image.shape[1], size)
  else:
    matrix = crop_matrix(box, size, options.margin)
  aligned = False
  if options.mode == 'aligned' and source != 'centre':
    eyes = eyes_from_landmarks(landmarks)
    if eyes is None and source == 'haar':
      eyes = detect_eyes(image, box)
    if eyes is not None:
      matrix = align_matrix(eyes, size, options.eye_distance,
                            options.eye_height)
      aligned = True
  face = _warp(image, matrix, size)
  return FaceResult(image=face, landmarks=transform_points(landmarks, matrix),
                    face_found=source != 'centre', source=source,
                    aligned=aligned, matrix=matrix,
                    landmark_source=landmark_source, confidence=confidence)


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """cv2.warpAffine with area pre-shrinking for strong downscaling.

  warpAffine samples bilinearly, which aliases when a 1000-pixel face becomes
  256 pixels, so the frame is first shrunk with INTER_AREA to ~1.5x the final
  scale and the matrix is rescaled to match.
  """
  scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
  if scale < 0.5:
    height, width = image.shape[:2]
    new_width = max(1, round(width * 1.5 * scale))
    new_height = max(1, round(height * 1.5 * scale))
    image = cv2.resize(image, (new_width, new_height),
                       interpolation=cv2.INTER_AREA)
    matrix = matrix.copy()
    # Pixel centres: x_small = (x + 0.5) * k - 0.5, so x = (x_small + 0.5) / k
    # - 0.5; fold that into the matrix.
    for column, k in ((0, new_width / width), (1, new_height / height)):
      matrix[:, 2] += matrix[:, column] * (0.5 / k - 0.5)
      matrix[:, column] /= k
  return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
