"""Identity (face shape, skin, features) and head pose of synthetic people.

Faces live in a canonical 3D frame: x to the image right, y down, z towards
the camera; the half face width at the cheeks is 1. Landmarks follow the
iBUG-68 layout (0-based, see ../shared/reference/facs.md): jaw 0-16, brows
17-21 / 22-26, nose 27-35, eyes 36-41 / 42-47, outer lips 48-59, inner lips
60-67. Subjects differ in shape, feature positions and skin; several of these
differences mimic AUs at rest (a low brow looks like AU4, a down-turned mouth
like AU15, deep folds like AU10/12), which is why labels are relative to each
subject's own neutral face.
"""

import dataclasses

import numpy as np

NUM_LANDMARKS = 68
JAW = np.arange(0, 17)
LEFT_BROW, RIGHT_BROW = np.arange(17, 22), np.arange(22, 27)
NOSE = np.arange(27, 36)
LEFT_EYE, RIGHT_EYE = np.arange(36, 42), np.arange(42, 48)
OUTER_LIPS, INNER_LIPS = np.arange(48, 60), np.arange(60, 68)

# Skin tones from light to dark (RGB), sampled by interpolation.
SKIN_TONES = np.array([[241, 214, 194], [226, 185, 155], [198, 150, 118],
                       [160, 110, 80], [112, 74, 52], [78, 52, 38]],
                      np.float32)
HAIR_COLOURS = np.array([[30, 24, 20], [62, 42, 30], [110, 80, 50],
                         [170, 140, 90], [120, 120, 118]], np.float32)


def _template() -> np.ndarray:
  """Mean neutral face, [68, 3] canonical (x, y, z)."""
  points = np.zeros((NUM_LANDMARKS, 3), np.float32)
  # Jaw: a super-ellipse from the left ear (y=-0.2) round the chin (y=0.95).
  theta = np.linspace(np.pi, 0.0, 17)
  c, s = np.cos(theta), np.sin(theta)
  points[JAW, 0] = np.sign(c) * np.abs(c) ** 0.8 * 0.97
  points[JAW, 1] = -0.2 + 1.15 * s ** 1.3
  points[JAW, 2] = -0.55 + 0.45 * s
  # Brows, outer (17) to inner (21); the right brow mirrors it.
  brow_x = np.array([-0.80, -0.64, -0.46, -0.30, -0.15])
  brow_y = np.array([-0.50, -0.58, -0.61, -0.59, -0.55])
  points[LEFT_BROW, 0], points[LEFT_BROW, 1] = brow_x, brow_y
  points[RIGHT_BROW, 0], points[RIGHT_BROW, 1] = -brow_x[::-1], brow_y[::-1]
  points[17:27, 2] = [0.0, 0.1, 0.15, 0.18, 0.2, 0.2, 0.18, 0.15, 0.1, 0.0]
  # Nose bridge 27-30 down to the tip, nostrils 31-35.
  points[27:31] = [[0, -0.38, 0.25], [0, -0.22, 0.33], [0, -0.06, 0.42],
                   [0, 0.10, 0.52]]
  points[31:36, 0] = [-0.19, -0.10, 0.0, 0.10, 0.19]
  points[31:36, 1] = [0.20, 0.24, 0.26, 0.24, 0.20]
  points[31:36, 2] = [0.3, 0.38, 0.42, 0.38, 0.3]
  # Eyes: corner, two upper-lid points, corner, two lower-lid points.
  for index, centre_x in ((LEFT_EYE, -0.42), (RIGHT_EYE, 0.42)):
    x = centre_x + np.array([-0.17, -0.06, 0.06, 0.17, 0.06, -0.06])
    y = -0.32 + np.array([0.0, -0.075, -0.075, 0.0, 0.06, 0.06])
    points[index, 0], points[index, 1], points[index, 2] = x, y, 0.12
  points[36, 1] = points[45, 1] = -0.31  # outer corners sit a little lower
  # Outer lips: left corner 48, upper 49-53, right corner 54, lower 55-59.
  points[OUTER_LIPS, 0] = [-0.34, -0.22, -0.09, 0.0, 0.09, 0.22, 0.34,
                           0.22, 0.10, 0.0, -0.10, -0.22]
  points[OUTER_LIPS, 1] = 0.52 + np.array(
      [0.0, -0.07, -0.10, -0.085, -0.10, -0.07, 0.0, 0.08, 0.115, 0.12, 0.115,
       0.08])
  points[OUTER_LIPS, 2] = [0.2, 0.3, 0.36, 0.38, 0.36, 0.3, 0.2, 0.3, 0.35,
                           0.37, 0.35, 0.3]
  # Inner lips: corners 60 and 64, upper 61-63, lower 65-67 (right to left).
  points[INNER_LIPS, 0] = [-0.28, -0.1, 0.0, 0.1, 0.28, 0.1, 0.0, -0.1]
  points[INNER_LIPS, 1] = 0.525
  points[INNER_LIPS, 2] = [0.22, 0.33, 0.36, 0.33, 0.22, 0.33, 0.36, 0.33]
  return points


TEMPLATE = _template()


@dataclasses.dataclass(frozen=True)
class Identity:
  """One synthetic person. Offsets are canonical units (half face width 1).

  `rest_*` are wrinkle/fold depths at rest (0-1), in the same units as the AU
  cues they resemble; `au_gain` ([15], SYNTHETIC_AUS order) scales how
  strongly this person shows each AU.
  """
  index: int
  neutral: np.ndarray  # [68, 3] canonical neutral landmarks
  forehead_top: float  # canonical y of the hairline
  skin: np.ndarray  # [3] RGB
  lips: np.ndarray
  brows: np.ndarray
  hair: np.ndarray
  iris: np.ndarray
  brow_thickness: float
  rest_forehead: float
  rest_glabella: float
  rest_crow: float
  rest_nasolabial: float
  rest_dimple: float
  rest_corner_lines: float
  stubble: float
  au_gain: np.ndarray


def sample_identity(index: int, seed: int,
                    tone_range: tuple[float, float] = (
                        0.0, len(SKIN_TONES) - 1.0)) -> Identity:
  """Identity of subject `index` (0-based); same seed, same person.

  `tone_range` is where the skin tone is drawn in SKIN_TONES (0 lightest);
  the default (all tones) gives the people of the original configs.
  """
  rng = np.random.default_rng([seed, index])
  p = TEMPLATE.copy()
  # Face shape: width, length and jaw.
  p[:, 0] *= rng.uniform(0.9, 1.06)
  lower = p[:, 1] > 0.15
  p[lower, 1] = 0.15 + (p[lower, 1] - 0.15) * rng.uniform(0.88, 1.12)
  p[JAW[3:14], 0] *= rng.uniform(0.92, 1.06)
  # Brows: height (a low brow mimics AU4, a high one AU1+2), inner/outer tilt
  # (inner-high mimics AU1, inner-low mimics AU4) and the gap between them.
  brows = np.r_[LEFT_BROW, RIGHT_BROW]
  p[brows, 1] += rng.normal(0.0, 0.04)
  inner_weight = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
  tilt = rng.normal(0.0, 0.025)
  p[LEFT_BROW, 1] += tilt * inner_weight
  p[RIGHT_BROW, 1] += tilt * inner_weight[::-1]
  gap = rng.normal(0.0, 0.025)
  p[LEFT_BROW, 0] -= gap * inner_weight
  p[RIGHT_BROW, 0] += gap * inner_weight[::-1]
  # Eyes: spacing, height, size and aperture (narrow eyes mimic AU7).
  spacing, height = rng.normal(0.0, 0.03), rng.normal(0.0, 0.025)
  size, aperture = rng.uniform(0.88, 1.12), rng.uniform(0.7, 1.25)
  for eye, side in ((LEFT_EYE, -1.0), (RIGHT_EYE, 1.0)):
    centre = p[eye, :2].mean(0)
    offset = (p[eye, :2] - centre) * size
    offset[:, 1] *= aperture
    p[eye, 0] = centre[0] + offset[:, 0] + side * spacing
    p[eye, 1] = centre[1] + offset[:, 1] + height
  # Nose length/width, mouth position, width, lip thickness; the resting
  # corner angle mimics AU12 (up) or AU15 (down).
  p[NOSE, 0] *= rng.uniform(0.85, 1.2)
  p[30:36, 1] += rng.normal(0.0, 0.025)
  mouth = np.r_[OUTER_LIPS, INNER_LIPS]
  p[mouth, 1] += rng.normal(0.0, 0.03)
  p[mouth, 0] *= rng.uniform(0.88, 1.12)
  lip_centre = p[INNER_LIPS, 1].mean()
  p[OUTER_LIPS, 1] = lip_centre + (p[OUTER_LIPS, 1] - lip_centre) * (
      rng.uniform(0.7, 1.3))
  corner = rng.normal(0.0, 0.022)
  p[[48, 54, 60, 64], 1] += corner
  p[[49, 53, 59, 55], 1] += corner * 0.4

  tone = rng.uniform(*tone_range)
  low = int(np.floor(tone))
  high = min(low + 1, len(SKIN_TONES) - 1)
  skin = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[high] - SKIN_TONES[low])
  skin = skin * rng.uniform(0.95, 1.05, 3)
  lips = skin * np.array([0.85, 0.58, 0.6]) * rng.uniform(0.9, 1.05)
  hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
  brows_colour = np.minimum(hair, skin * 0.45) * rng.uniform(0.8, 1.1)
  iris = np.array([rng.uniform(20, 90), rng.uniform(20, 80),
                   rng.uniform(10, 70)])
  age = rng.uniform(0.0, 1.0)  # older faces carry deeper resting lines
  return Identity(
      index=index,
      neutral=p.astype(np.float32),
      forehead_top=float(rng.uniform(-1.2, -0.95)),
      skin=np.clip(skin, 0, 255).astype(np.float32),
      lips=np.clip(lips, 0, 255).astype(np.float32),
      brows=np.clip(brows_colour, 0, 255).astype(np.float32),
      hair=np.clip(hair, 0, 255).astype(np.float32),
      iris=iris.astype(np.float32),
      brow_thickness=float(rng.uniform(0.035, 0.07)),
      rest_forehead=float(0.45 * age * rng.uniform(0.5, 1.0)),
      rest_glabella=float(rng.uniform(0.0, 0.35) * (rng.random() < 0.5)),
      rest_crow=float(0.4 * age * rng.uniform(0.3, 1.0)),
      rest_nasolabial=float(0.15 + 0.35 * age * rng.uniform(0.5, 1.0)),
      rest_dimple=float(rng.uniform(0.2, 0.5) * (rng.random() < 0.25)),
      rest_corner_lines=float(0.3 * age * rng.uniform(0.0, 1.0)),
      stubble=float(rng.uniform(0.2, 0.6) * (rng.random() < 0.3)),
      au_gain=rng.uniform(0.75, 1.25, 15).astype(np.float32),
  )


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
  """[3, 3] rotation (degrees): yaw about y, pitch about x, roll about z."""
  y, p, r = np.deg2rad([yaw, pitch, roll])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0],
                 [-np.sin(y), 0, np.cos(y)]])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)],
                 [0, np.sin(p), np.cos(p)]])
  rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0],
                 [0, 0, 1]])
  return (rz @ rx @ ry).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Pose:
  """Head pose for one frame: angles in degrees, centre in pixels, scale in
  pixels per canonical unit."""
  yaw: float
  pitch: float
  roll: float
  centre_x: float
  centre_y: float
  scale: float


def project(points: np.ndarray, pose: Pose) -> np.ndarray:
  """Weak-perspective projection: points [N, 3] canonical -> [N, 2] pixels."""
  # Rotate about the face centre (between the eyes and mouth), not the nose.
  pivot = np.array([0.0, 0.1, 0.0], np.float32)
  rotated = (points - pivot) @ rotation(pose.yaw, pose.pitch, pose.roll).T
  rotated += pivot
  return np.stack([pose.centre_x + pose.scale * rotated[:, 0],
                   pose.centre_y + pose.scale * rotated[:, 1]], axis=-1)
