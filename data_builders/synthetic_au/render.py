"""Draws a synthetic face frame: shapes, AU cues, lighting and nuisances.

Everything is drawn at twice the stored size (OpenCV anti-aliased fills and
lines at 1/16 pixel precision) and area-downsampled, which anti-aliases thin
wrinkles. Cues are drawn into a darkening and a brightening layer that are
softened before they modulate the skin. Per-video nuisances (background,
light direction, colour cast, blur, sensor noise, JPEG quality) and per-frame
head motion keep raw pixels from giving labels away.
"""

import dataclasses
import functools

import cv2
import numpy as np

from data_builders.synthetic_au import face_geometry as geometry

SUPERSAMPLE = 2
_SHIFT = 4  # OpenCV fixed-point bits: coordinates in 1/16 pixel
# Fixed dot patterns (canonical offsets) for chin texture and stubble.
_DOTS = np.random.default_rng(12345)
CHIN_DOTS = _DOTS.uniform([-0.2, -0.1], [0.2, 0.08], (40, 2)).astype(
    np.float32)
STUBBLE_DOTS = np.concatenate([
    _DOTS.uniform([-0.75, 0.2], [0.75, 1.0], (260, 2)),
    _DOTS.uniform([-0.3, 0.33], [0.3, 0.4], (40, 2))]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Look:
  """Per-video nuisances."""
  background: np.ndarray  # [C, C, 3] uint8 at the drawing size
  light: np.ndarray  # [3] unit direction (x right, y down, z to camera)
  ambient: float
  diffuse: float
  cast: np.ndarray  # [3] RGB gain
  blur_sigma: float  # output pixels
  noise_std: float  # grey levels
  jpeg_quality: int


@dataclasses.dataclass(frozen=True)
class Lighting:
  """Ranges (low, high) that a video's light is drawn from, uniformly.

  The defaults are the `tiny`/`default`/`multiview` ranges; a config that
  changes them (e.g. `shifted`) renders another "lab". A range feeds
  `rng.uniform(low, high)` at the same point of the stream whatever its
  values, so the defaults give the same draws as before this knob existed.
  """
  ambient: tuple[float, float] = (0.45, 0.65)
  diffuse: tuple[float, float] = (0.35, 0.6)
  cast: tuple[float, float] = (0.85, 1.12)  # per-channel RGB gain


def sample_look(rng: np.random.Generator, image_size: int,
                lighting: Lighting = Lighting()) -> Look:
  """Random background and camera/lighting conditions for one video."""
  size = image_size * SUPERSAMPLE
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  a, b = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * xx + np.sin(angle) * yy + 1.0) / 2.0
  background = a + (b - a) * ramp[..., None]
  blobs = np.zeros((size, size), np.float32)
  for _ in range(6):
    centre = tuple(int(v) for v in rng.uniform(0, size, 2))
    cv2.circle(blobs, centre, int(rng.uniform(0.05, 0.25) * size),
               float(rng.uniform(-1, 1)), -1)
  blobs = cv2.GaussianBlur(blobs, (0, 0), size * 0.05)
  background += 40.0 * blobs[..., None] * rng.uniform(0.5, 1.0, 3)
  light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.7, 0.3), 1.0])
  return Look(
      background=np.clip(background, 0, 255).astype(np.uint8),
      light=(light / np.linalg.norm(light)).astype(np.float32),
      ambient=float(rng.uniform(*lighting.ambient)),
      diffuse=float(rng.uniform(*lighting.diffuse)),
      cast=rng.uniform(*lighting.cast, 3).astype(np.float32),
      blur_sigma=float(rng.uniform(0.0, 0.9)),
      noise_std=float(rng.uniform(1.0, 5.0)),
      jpeg_quality=int(rng.integers(40, 92)),
  )


def _fixed(points: np.ndarray) -> np.ndarray:
  return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _fill(canvas, points, colour):
  cv2.fillPoly(canvas, [_fixed(points)], tuple(float(c) for c in colour),
               cv2.LINE_AA, _SHIFT)


def _line(canvas, points, value, thickness, closed=False):
  cv2.polylines(canvas, [_fixed(points)], closed,
                tuple(float(v) for v in np.atleast_1d(value)),
                max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _fill_clipped(canvas, clip, points, colour):
  """Fills polygon `points` only inside polygon `clip` (both [N, 2])."""
  low = np.floor(clip.min(0)).astype(int) - 1
  high = np.ceil(clip.max(0)).astype(int) + 2
  low = np.maximum(low, 0)
  high = np.minimum(high, canvas.shape[1::-1])
  if np.any(high - low < 2):
    return
  shape = (high[1] - low[1], high[0] - low[0])
  clip_mask, fill_mask = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
  _fill(clip_mask, clip - low, (255,))
  _fill(fill_mask, points - low, (255,))
  alpha = (np.minimum(clip_mask, fill_mask).astype(np.float32) / 255.0)[
      ..., None]
  roi = canvas[low[1]:high[1], low[0]:high[0]]
  roi[:] = (roi * (1 - alpha) + np.asarray(colour) * alpha).astype(np.uint8)


def _curve(start, end, bend, n=6):
  """[n, 3] quadratic curve from start to end, bent by `bend` [3]."""
  t = np.linspace(0.0, 1.0, n)[:, None]
  middle = (np.asarray(start) + np.asarray(end)) / 2 + np.asarray(bend)
  return ((1 - t) ** 2 * start + 2 * t * (1 - t) * middle + t ** 2 * end
          ).astype(np.float32)


def _p(x, y, z=0.1):
  return np.array([x, y, z], np.float32)


def cue_polylines(landmarks: np.ndarray, cues: dict[str, np.ndarray],
                  identity: geometry.Identity):
  """Canonical wrinkle/fold/bulge strokes.

  Returns:
    list of (points [n, 3] canonical, layer 'dark'|'light', value,
    thickness in canonical units).
  """
  lm = landmarks
  strokes = []

  def add(points, value, layer='dark', thickness=0.022):
    if value > 0.02:
      strokes.append((points, layer, float(value), thickness))

  top = identity.forehead_top + 0.1
  inner_y = min(lm[21, 1], lm[22, 1])
  for k in range(3):
    y = inner_y - 0.14 - 0.085 * k
    if y > top:
      add(_curve(_p(-0.28, y + 0.02), _p(0.28, y + 0.02), [0, -0.03, 0]),
          cues['forehead_centre'].mean() * (1 - 0.2 * k))
    for side, brow in ((0, 18), (1, 25)):
      sign = -1.0 if side == 0 else 1.0
      y = lm[brow, 1] - 0.13 - 0.085 * k
      if y > top:
        add(_curve(_p(sign * 0.8, y + 0.04), _p(sign * 0.36, y),
                   [0, -0.04, 0]), cues['forehead_lateral'][side]
            * (1 - 0.2 * k))
  mid_x = (lm[21, 0] + lm[22, 0]) / 2
  glabella = cues['glabella'].mean()
  for sign in (-1.0, 1.0):
    x = mid_x + sign * 0.05
    add(np.stack([_p(x, inner_y + 0.02, 0.2),
                  _p(x + sign * 0.02, inner_y - 0.06 - 0.1 * glabella, 0.2)]),
        glabella, thickness=0.026)
  for side, (corner, lid) in enumerate(((36, [36, 41, 40, 39]),
                                        (45, [42, 47, 46, 45]))):
    sign = -1.0 if side == 0 else 1.0
    start = lm[corner] + _p(sign * 0.05, 0.0, 0.0)
    for angle in (-0.45, 0.0, 0.45):
      direction = np.array([sign * np.cos(angle), np.sin(angle), 0.0])
      add(np.stack([start, start + 0.13 * direction]),
          cues['crow'][side] * (0.8 if angle else 1.0))
    lower = lm[lid] + _p(0.0, 0.05, 0.0)
    add(lower, cues['lid_bulge'][side], 'light', 0.03)
    add(lm[lid] + _p(0.0, 0.1, 0.0), cues['lid_bulge'][side] * 0.8)
    cheek = _curve(_p(sign * 0.62, 0.08 - 0.04 * cues['cheek_lift'][side]),
                   _p(sign * 0.32, 0.08), [0, -0.05, 0])
    add(cheek, cues['cheek_lift'][side] * 0.35, 'light', 0.12)
    wing, mouth = (31, 48) if side == 0 else (35, 54)
    fold = _curve(lm[wing] + _p(sign * 0.05, -0.02, -0.1),
                  lm[mouth] + _p(sign * 0.1, 0.12, -0.1), [sign * 0.05, 0, 0])
    add(fold, cues['nasolabial'][side], thickness=0.03)
    add(np.stack([lm[mouth] + _p(sign * 0.06, -0.04, 0),
                  lm[mouth] + _p(sign * 0.07, 0.04, 0)]),
        cues['dimple'][side], thickness=0.03)
    add(np.stack([lm[mouth] + _p(sign * 0.01, 0.03, 0),
                  lm[mouth] + _p(sign * 0.06, 0.15, 0)]),
        cues['corner_lines'][side])
  nose = cues['nose_wrinkle'].mean()
  for k in range(3):
    y = lm[27, 1] + 0.03 + 0.05 * k
    add(_curve(_p(-0.09, y, 0.3), _p(0.09, y, 0.3), [0, -0.015, 0]), nose)
  for sign in (-1.0, 1.0):
    add(np.stack([_p(sign * 0.08, lm[28, 1], 0.3),
                  _p(sign * 0.17, lm[29, 1] + 0.03, 0.25)]), nose * 0.8)
  chin = cues['chin_texture'].mean()
  add(_curve(lm[57] + _p(-0.14, 0.07, -0.05), lm[57] + _p(0.14, 0.07, -0.05),
             [0, 0.025, 0]), 0.15 + 0.6 * chin, thickness=0.03)
  ridges = cues['lip_ridges'].mean()
  for p in (49, 50, 52, 53, 55, 56, 58, 59):
    outward = lm[p, :2] - lm[[51, 57]].mean(0)[:2]
    outward = np.r_[outward / (np.linalg.norm(outward) + 1e-6), 0.0]
    add(np.stack([lm[p] + 0.01 * outward, lm[p] + 0.07 * outward]), ridges,
        thickness=0.02)
  bulge = cues['lip_bulge'].mean()
  add(_curve(lm[49] + _p(0, -0.04, 0), lm[53] + _p(0, -0.04, 0), [0, -0.04, 0]),
      bulge, 'light', 0.04)
  add(_curve(lm[49] + _p(0, -0.085, 0), lm[53] + _p(0, -0.085, 0),
             [0, -0.04, 0]), bulge * 0.7)
  add(_curve(lm[59] + _p(0, 0.04, 0), lm[55] + _p(0, 0.04, 0), [0, 0.04, 0]),
      bulge, 'light', 0.04)
  return strokes


def _head_outline(identity: geometry.Identity, landmarks: np.ndarray):
  """Canonical skull arc over the top, jaw 16 back to jaw 0: [n, 3]."""
  theta = np.linspace(0.0, np.pi, 15)
  x0, x16 = landmarks[0, 0], landmarks[16, 0]
  half = (x16 - x0) / 2 * 1.02
  top = identity.forehead_top - 0.25
  return np.stack([(x0 + x16) / 2 + half * np.cos(theta),
                   -0.2 + (top + 0.2) * np.sin(theta),
                   -0.5 + 0.5 * np.sin(theta)], -1).astype(np.float32)


def render_frame(identity: geometry.Identity, landmarks: np.ndarray,
                 cues: dict[str, np.ndarray], pose: geometry.Pose,
                 look: Look, rng: np.random.Generator,
                 image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """One frame.

  Args:
    identity: the person.
    landmarks: [68, 3] canonical landmarks with AUs applied.
    cues: `au_effects.cue_strengths` output.
    pose: head pose in drawing-canvas pixels (SUPERSAMPLE x image_size).
    look: per-video nuisances.
    rng: per-frame noise.
    image_size: stored side S.

  Returns:
    image [S, S, 3] uint8 RGB and landmarks [68, 2] (x, y) in its pixels.
  """
  head = _head_outline(identity, landmarks)
  hairline = _curve(_p(-0.92, -0.45), _p(0.92, -0.45),
                    [0, 2 * (identity.forehead_top + 0.45), 0], n=9)
  strokes = cue_polylines(landmarks, cues, identity)
  chin_centre = landmarks[8] + _p(0, -0.12, 0)
  pieces = [landmarks, head, hairline,
            np.c_[CHIN_DOTS + chin_centre[:2], np.zeros(len(CHIN_DOTS))],
            np.c_[STUBBLE_DOTS, np.full(len(STUBBLE_DOTS), 0.2)]]
  pieces += [s[0] for s in strokes]
  flat = geometry.project(np.concatenate(pieces).astype(np.float32), pose)
  splits = np.cumsum([len(p) for p in pieces])[:-1]
  projected = np.split(flat, splits)
  pts, head2d, hair2d, chin2d, stubble2d = projected[:5]
  stroke2d = projected[5:]

  canvas = look.background.copy()
  skin = identity.skin
  # Back hair and neck, then the face (jaw + skull arc) and hair on top.
  back = (head2d - pts[[0, 16]].mean(0)) * 1.1 + pts[[0, 16]].mean(0)
  _fill(canvas, np.r_[pts[[0]] + [0, pose.scale * 0.4], back,
                      pts[[16]] + [0, pose.scale * 0.4]], identity.hair)
  neck = np.r_[pts[[4]], pts[[4]] + [0, pose.scale * 2],
               pts[[12]] + [0, pose.scale * 2], pts[[12]]]
  _fill(canvas, neck, skin * 0.8)
  _fill(canvas, np.r_[pts[0:17], head2d], skin)
  # Where the head is: lit by the Lambert model; the background is not.
  head_mask = np.zeros(canvas.shape[:2], np.float32)
  _fill(head_mask, np.r_[pts[[0]] + [0, pose.scale * 0.4], back,
                         pts[[16]] + [0, pose.scale * 0.4]], (1.0,))
  _fill(head_mask, neck, (1.0,))
  _fill(head_mask, np.r_[pts[0:17], head2d], (1.0,))
  _fill(canvas, np.r_[hair2d, head2d[2:-2]], identity.hair)
  # Eyes: sclera, iris clipped to the opening, lid lines.
  for eye in (geometry.LEFT_EYE, geometry.RIGHT_EYE):
    opening = pts[eye]
    _fill(canvas, opening, (225, 222, 215))
    centre = opening.mean(0) + rng.normal(0, 0.01 * pose.scale, 2)
    radius = 0.075 * pose.scale
    circle = centre + radius * np.stack(
        [np.cos(np.linspace(0, 2 * np.pi, 16)),
         np.sin(np.linspace(0, 2 * np.pi, 16))], -1)
    _fill_clipped(canvas, opening, circle, identity.iris)
    _fill_clipped(canvas, opening, centre + 0.45 * (circle - centre),
                  (15, 12, 12))
    _line(canvas, opening[[0, 1, 2, 3]], skin * 0.3, 0.022 * pose.scale)
    _line(canvas, opening[[3, 4, 5, 0]], skin * 0.6, 0.012 * pose.scale)
    crease = opening[[0, 1, 2, 3]] + [0, -0.05 * pose.scale]
    _line(canvas, crease, skin * 0.75, 0.012 * pose.scale)
  # Brows: tapered bands, thicker towards the inner end.
  for brow in (geometry.LEFT_BROW, geometry.RIGHT_BROW):
    width = np.array([0.55, 0.8, 0.95, 1.0, 1.0])
    if brow[0] == 22:
      width = width[::-1]
    half = (identity.brow_thickness * pose.scale / 2 * width)[:, None]
    band = np.r_[pts[brow] - [0, 1] * half, (pts[brow] + [0, 1] * half)[::-1]]
    _fill(canvas, band, identity.brows)
  # Nose: bridge sides, nostril wings and nostrils.
  for sign in (-1.0, 1.0):  # bridge sides
    _line(canvas, pts[[28, 29]] + [sign * 0.07 * pose.scale, 0], skin * 0.85,
          0.02 * pose.scale)
  _line(canvas, pts[31:36], skin * 0.6, 0.018 * pose.scale)
  for a, b in ((31, 32), (34, 35)):
    centre = tuple(_fixed((pts[a] + pts[b]) / 2 + [0, -0.01 * pose.scale]))
    axes = tuple(_fixed(np.array([0.04, 0.022]) * pose.scale))
    cv2.ellipse(canvas, centre, axes, 0, 0, 360,
                tuple(float(c) for c in skin * 0.35), -1,
                cv2.LINE_AA, _SHIFT)
  # Mouth: lips, then the opening (dark, teeth at the top) or the lip line.
  _fill(canvas, pts[48:60], identity.lips)
  inner = pts[60:68]
  gap = np.linalg.norm(pts[66] - pts[62]) / pose.scale
  if gap > 0.02:
    _fill_clipped(canvas, inner, inner, (45, 20, 22))
    teeth = np.r_[pts[60:65], pts[64:59:-1] + [0, 0.07 * pose.scale]]
    _fill_clipped(canvas, inner, teeth, (215, 210, 195))
  _line(canvas, pts[[60, 61, 62, 63, 64]], identity.lips * 0.45,
        0.014 * pose.scale)

  # Cue layers, softened, then lighting on the whole scene.
  size = canvas.shape[0]
  dark = np.zeros((size, size), np.float32)
  light = np.zeros((size, size), np.float32)
  for (_, layer, value, thickness), points in zip(strokes, stroke2d):
    _line(dark if layer == 'dark' else light, points, min(value, 1.5),
          thickness * pose.scale)
  chin = cues['chin_texture'].mean()
  if chin > 0.02:
    for x, y in _fixed(chin2d):
      cv2.circle(dark, (int(x), int(y)), int(0.016 * pose.scale * 16),
                 float(min(chin, 1.5)), -1, cv2.LINE_AA, _SHIFT)
  if identity.stubble > 0:
    for x, y in _fixed(stubble2d):
      cv2.circle(dark, (int(x), int(y)), int(0.01 * pose.scale * 16),
                 identity.stubble, -1, cv2.LINE_AA, _SHIFT)
  # Downsample first: lighting and cue layers are smooth at the stored size.
  def shrink(layer):
    return cv2.resize(layer, (image_size, image_size),
                      interpolation=cv2.INTER_AREA)
  dark = cv2.GaussianBlur(shrink(dark), (0, 0), 0.45)
  light = cv2.GaussianBlur(shrink(light), (0, 0), 0.75)
  shade = _shading((pts + 0.5) / SUPERSAMPLE - 0.5,
                   pose.scale / SUPERSAMPLE, image_size, look)
  on_head = shrink(head_mask)
  shade = on_head * shade + (1 - on_head) * (look.ambient
                                             + 0.8 * look.diffuse)
  gain = shade * (1.0 - 0.5 * np.minimum(dark, 1.5))
  image = shrink(canvas).astype(np.float32) * gain[..., None]
  image += (50.0 * np.minimum(light, 1.5) * shade)[..., None]
  image *= look.cast
  if look.blur_sigma > 0.1:
    image = cv2.GaussianBlur(image, (0, 0), look.blur_sigma)
  image += rng.normal(0.0, look.noise_std, image.shape).astype(np.float32)
  image = np.clip(image, 0, 255).astype(np.uint8)
  ok, jpeg = cv2.imencode('.jpg', image[..., ::-1],
                          [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
  if not ok:
    raise RuntimeError('OpenCV could not JPEG-encode a synthetic frame.')
  image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
  return np.ascontiguousarray(image), to_image_pixels(pts)


def to_image_pixels(points: np.ndarray) -> np.ndarray:
  """Drawing-canvas pixels [N, 2] -> stored-image pixels (area downsample)."""
  return ((points + 0.5) / SUPERSAMPLE - 0.5).astype(np.float32)


def image_landmarks(landmarks: np.ndarray,
                    pose: geometry.Pose) -> np.ndarray:
  """[68, 3] canonical -> [68, 2] stored-image pixels, as `render_frame`."""
  return to_image_pixels(geometry.project(landmarks, pose))


def _shading(pts: np.ndarray, scale: float, size: int,
             look: Look) -> np.ndarray:
  """[S, S] Lambert shading of an ellipsoid head under the video's light.

  pts: [68, 2] landmarks and scale (pixels per canonical unit) at size S.
  """
  # Points no AU moves, so expressions do not change the lighting.
  centre = pts[[0, 16, 27, 30]].mean(0) + [0.0, 0.2 * scale]
  yy, xx = _grid(size)
  nx = (xx - centre[0]) / (1.1 * scale)
  ny = (yy - centre[1]) / (1.4 * scale)
  norm = np.maximum(np.sqrt(nx * nx + ny * ny), 1.0)
  nx, ny = nx / norm, ny / norm
  nz = np.sqrt(np.maximum(0.0, 1.0 - nx * nx - ny * ny))
  lambert = np.maximum(0.0, nx * look.light[0] + ny * look.light[1]
                       + nz * look.light[2])
  return look.ambient + look.diffuse * lambert


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  return tuple(np.mgrid[0:size, 0:size].astype(np.float32))
