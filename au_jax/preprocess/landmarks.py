"""Dataset landmark sets mapped to the iBUG-68 layout.

au_jax records carry [68, 2] landmarks in the iBUG-300W order (0-16 jaw,
17-26 brows, 27-35 nose, 36-47 eyes, 48-59 outer lips, 60-67 inner lips).
The 66-point sets of DISFA and UNBC-McMaster (CMU AAM tracker) are the 68
without the two inner-mouth corners (iBUG 60 and 64); the 49-point set of
some BP4D releases further drops the 17 jaw points. Missing points are -1.
"""

import numpy as np

NUM_LANDMARKS = 68
# iBUG-68 index of each point of the 66-point set, in file order.
IBUG_OF_66 = tuple(i for i in range(68) if i not in (60, 64))
# iBUG-68 index of each point of the 49-point set, in file order.
IBUG_OF_49 = tuple(i for i in range(17, 68) if i not in (60, 64))


def to_ibug68(points: np.ndarray) -> np.ndarray:
  """[N, 2] dataset landmarks (N in 49, 66, 68) -> [68, 2] float32, -1 absent.

  Raises:
    ValueError: naming the point count when it is not a known layout.
  """
  points = np.asarray(points, np.float32)
  if points.ndim != 2 or points.shape[1] != 2:
    raise ValueError(f'Landmarks must be [N, 2], got shape {points.shape}.')
  out = np.full((NUM_LANDMARKS, 2), -1, np.float32)
  if len(points) == 68:
    out[:] = points
  elif len(points) == 66:
    out[list(IBUG_OF_66)] = points
  elif len(points) == 49:
    out[list(IBUG_OF_49)] = points
  else:
    raise ValueError(f'Unknown landmark layout with {len(points)} points; '
                     'expected 49, 66 or 68.')
  return out


# Where each dataset's record `landmarks` come from, for checks that need
# them before any data is read (config_checks refuses LP-Net's P-Net on a
# dataset whose records carry none):
#   'release': read from the download (mapped by `to_ibug68`); a frame
#     without a file gets the detector's points;
#   'detector': fitted at build time by dlib's 68-point model
#     (au_jax/preprocess/landmark_detector.py), -1 where no face was found;
#   'rendered': drawn with the face (synthetic_au).
# BP4D's 49-point files ship with some releases only and their layout is not
# documented, so BP4D uses the detector. A dataset missing from this table
# has no landmarks.
DATASET_LANDMARKS = {
    'synthetic_au': 'rendered',
    'bp4d': 'detector',
    'disfa': 'release',
    'unbc_mcmaster': 'release',
    'fera2017': 'detector',
    'ck_plus': 'release',
    'rafd': 'detector',
    'lfw': 'detector',
    'celeba': 'detector',
    'vggface2': 'detector',
}


def has_landmarks(dataset: str) -> bool:
  """True when `dataset`'s records carry landmarks (DATASET_LANDMARKS)."""
  return DATASET_LANDMARKS.get(dataset) is not None
