"""How each AU changes the face: landmark motion and local appearance cues.

Follows the FACS table in ../shared/reference/facs.md: every AU moves its own
landmarks (brows, lids, nose wings, lips, jaw) and drives appearance cues in
its own region (forehead wrinkles, glabella furrows, crow's feet, lid bulges,
nose wrinkles, nasolabial folds, dimples, corner lines, chin texture, lip
ridges and bulges). Strength is linear in intensity (0-5) times the subject's
per-AU gain, added to the subject's neutral face, so labels stay relative to
that subject's own neutral.
"""

import numpy as np

from au_jax import aus
from data_builders.synthetic_au import face_geometry

AU_INDEX = {au: i for i, au in enumerate(aus.SYNTHETIC_AUS)}


def _motion_table() -> np.ndarray:
  """[15, 68, 3] canonical displacement of each AU at intensity 5."""
  d = np.zeros((len(aus.SYNTHETIC_AUS), 68, 3), np.float32)

  def move(au, points, dx=0.0, dy=0.0, mirror_x=True):
    # dx is given for the image-left side; mirrored (negated) on the right.
    for p in np.atleast_1d(points):
      side = 1.0 if face_geometry.TEMPLATE[p, 0] < -1e-3 else (
          -1.0 if face_geometry.TEMPLATE[p, 0] > 1e-3 else 0.0)
      d[AU_INDEX[au], p, 0] += dx * (side if mirror_x else 1.0)
      d[AU_INDEX[au], p, 1] += dy

  # AU1 inner brow raiser: inner brow up, brows slant.
  move(1, [21, 22], dy=-0.13); move(1, [20, 23], dy=-0.09)
  move(1, [19, 24], dy=-0.045)
  # AU2 outer brow raiser: outer brow up, arched.
  move(2, [17, 26], dy=-0.12); move(2, [18, 25], dy=-0.11)
  move(2, [19, 24], dy=-0.06); move(2, [37, 38, 43, 44], dy=-0.01)
  # AU4 brow lowerer: brows down and together, upper lids lowered.
  move(4, [21, 22], dx=0.07, dy=0.09); move(4, [20, 23], dx=0.04, dy=0.08)
  move(4, [19, 24], dx=0.02, dy=0.06); move(4, [17, 18, 25, 26], dy=0.035)
  move(4, [37, 38, 43, 44], dy=0.02)
  # AU6 cheek raiser: lower lids and cheeks up, outer eye corners up.
  move(6, [40, 41, 46, 47], dy=-0.035); move(6, [36, 45], dy=-0.015)
  move(6, [1, 2, 3, 13, 14, 15], dy=-0.03)
  # AU7 lid tightener: lower lids up and straight, aperture narrows.
  move(7, [40, 41, 46, 47], dy=-0.045); move(7, [37, 38, 43, 44], dy=0.015)
  # AU9 nose wrinkler: nostril wings and upper lip up.
  move(9, [31, 35], dy=-0.05); move(9, [32, 33, 34], dy=-0.035)
  move(9, [28, 29], dy=-0.015); move(9, [50, 51, 52], dy=-0.02)
  move(9, [21, 22], dy=0.02)
  # AU10 upper lip raiser: upper lip up (centre most), slightly angled.
  # The inner lip rises less, so 10 alone barely parts the lips (that is 25).
  move(10, [50, 51, 52], dy=-0.075); move(10, [61, 62, 63], dy=-0.025)
  move(10, [49, 53], dy=-0.05); move(10, [31, 32, 33, 34, 35], dy=-0.015)
  # AU12 lip corner puller: corners up and out, cheeks lift.
  move(12, [48, 54, 60, 64], dx=-0.07, dy=-0.085)
  move(12, [49, 53, 59, 55], dx=-0.035, dy=-0.04)
  move(12, [61, 63, 65, 67], dx=-0.02, dy=-0.02)
  move(12, [2, 3, 4, 12, 13, 14], dx=-0.015, dy=-0.025)
  # AU14 dimpler: corners tightened and drawn in.
  move(14, [48, 54, 60, 64], dx=0.05, dy=-0.015)
  move(14, [49, 53, 59, 55], dx=0.02)
  # AU15 lip corner depressor: corners down.
  move(15, [48, 54, 60, 64], dy=0.08); move(15, [49, 53, 59, 55], dy=0.035)
  # AU17 chin raiser: chin boss and lower lip pushed up.
  move(17, [56, 57, 58], dy=-0.06); move(17, [65, 66, 67], dy=-0.03)
  move(17, [7, 8, 9], dy=-0.04); move(17, [55, 59], dy=-0.03)
  # AU23 lip tightener: red parts thinner, mouth narrower.
  move(23, [49, 50, 51, 52, 53], dy=0.045); move(23, [55, 56, 57, 58, 59],
                                                    dy=-0.05)
  move(23, [48, 54, 60, 64], dx=0.03)
  # AU24 lip pressor: lips pressed together and flattened.
  move(24, [50, 51, 52], dy=0.025); move(24, [56, 57, 58], dy=-0.035)
  move(24, [48, 54], dx=0.01, dy=0.01)
  # AU25 lips part: lower inner lip drops away from the upper one.
  move(25, [65, 66, 67], dy=0.09); move(25, [61, 62, 63], dy=-0.015)
  move(25, [55, 56, 57, 58, 59], dy=0.06)
  # AU26 jaw drop: jaw points and the whole lower lip go down; the lips part
  # a little by themselves (25 usually accompanies 26).
  move(26, [8], dy=0.14); move(26, [6, 7, 9, 10], dy=0.11)
  move(26, [5, 11], dy=0.06); move(26, [55, 56, 57, 58, 59], dy=0.12)
  move(26, [65, 66, 67], dy=0.06)
  return d


MOTION = _motion_table()


def side_weights(unilateral: np.ndarray) -> np.ndarray:
  """[15] in {-1 left only, 0 both, 1 right only} -> [15, 2] (left, right).

  A unilateral AU (contempt's 12 and 14) keeps 35% on the other side.
  """
  weights = np.ones((len(unilateral), 2), np.float32)
  weights[unilateral < 0, 1] = 0.35
  weights[unilateral > 0, 0] = 0.35
  return weights


def deform(identity: face_geometry.Identity, intensity: np.ndarray,
           unilateral: np.ndarray) -> np.ndarray:
  """Landmarks with AUs applied.

  Args:
    identity: the person.
    intensity: [15] continuous AU intensities 0-5 (SYNTHETIC_AUS order).
    unilateral: [15] side of each AU (see `side_weights`).

  Returns:
    [68, 3] canonical landmarks.
  """
  strength = np.clip(intensity, 0.0, 5.0) / 5.0 * identity.au_gain  # [15]
  weights = side_weights(unilateral)  # [15, 2]
  x = face_geometry.TEMPLATE[:, 0]
  left = (x < -1e-3)[None, :]
  right = (x > 1e-3)[None, :]
  per_point = np.where(left, weights[:, :1], np.where(
      right, weights[:, 1:], weights.mean(1, keepdims=True)))  # [15, 68]
  motion = np.einsum('a,ap,apc->pc', strength, per_point, MOTION)
  return identity.neutral + motion


CUES = ('forehead_centre', 'forehead_lateral', 'glabella', 'crow',
        'lid_bulge', 'cheek_lift', 'nose_wrinkle', 'nasolabial', 'dimple',
        'corner_lines', 'chin_texture', 'lip_ridges', 'lip_bulge')


def cue_strengths(identity: face_geometry.Identity, intensity: np.ndarray,
                  unilateral: np.ndarray) -> dict[str, np.ndarray]:
  """Depth of every appearance cue, per side.

  Returns:
    cue name -> [2] (image-left, image-right) strength, about 0-1.5; a
    subject's resting lines are added to the AU-driven depth.
  """
  s = (np.clip(intensity, 0.0, 5.0) / 5.0 * identity.au_gain)[:, None] * (
      side_weights(unilateral))  # [15, 2]
  a = {au: s[i] for i, au in enumerate(aus.SYNTHETIC_AUS)}
  return {
      'forehead_centre': identity.rest_forehead + 0.9 * a[1] + 0.25 * a[2],
      'forehead_lateral': identity.rest_forehead + 0.9 * a[2] + 0.2 * a[1],
      'glabella': identity.rest_glabella + 1.0 * a[4],
      'crow': identity.rest_crow + 1.0 * a[6],
      'lid_bulge': 0.9 * a[7] + 0.45 * a[6],
      'cheek_lift': 0.8 * a[6] + 0.5 * a[12],
      'nose_wrinkle': 1.0 * a[9],
      'nasolabial': identity.rest_nasolabial + 0.6 * a[10] + 0.6 * a[12]
                    + 0.3 * a[9],
      'dimple': identity.rest_dimple + 1.0 * a[14],
      'corner_lines': identity.rest_corner_lines + 1.0 * a[15],
      'chin_texture': 1.0 * a[17],
      'lip_ridges': 1.3 * a[23],
      'lip_bulge': 1.3 * a[24],
  }
