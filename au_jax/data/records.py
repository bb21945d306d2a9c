"""The frame record every au_jax dataset builder writes (see DESIGN.md).

All builders (synthetic_au, bp4d, disfa, unbc_mcmaster, fera2017) call
`frame_features` so their records are interchangeable: every method reads any
dataset. Splits hold one subject each (split name = subject id) so folds are
chosen at read time, never baked into the files.
"""

import numpy as np
import tensorflow_datasets as tfds

NUM_LANDMARKS = 68  # iBUG-68 layout; points a dataset lacks are -1.
UNKNOWN = -1  # au_occurrence / au_intensity / emotion / identity not known.


def frame_features(num_aus: int, image_size: int,
                   encoding: str = 'png') -> tfds.features.FeaturesDict:
  """TFDS features of one frame record.

  Args:
    num_aus: length of the dataset's AU set (aus.DATASET_AUS order).
    image_size: stored images are square, [image_size, image_size, 3] uint8.
    encoding: 'png' (lossless, synthetic data) or 'jpeg' (real frames).

  Fields:
    image: [S, S, 3] uint8 face crop.
    au_occurrence: [C] int8, 1 present, 0 absent, -1 unknown.
    au_intensity: [C] float32, 0-5 (FACS A-E = 1-5), -1 where not coded.
    landmarks: [68, 2] float32 (x, y) pixels in `image`, -1 where absent.
    face_found: bool, False where face detection failed (the frame is kept,
      marked, and counted; a pipeline may skip it with a count).
    subject, sequence: text ids; frame_index: int32 frame number in sequence.
    view: int32 camera/head-pose view (FERA 2017: 1-9), 0 for single-view.
    emotion: int32 index into aus.EMOTIONS, -1 unknown.
    identity: int32 person id (unique within the dataset), -1 unknown.
  """
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(
          shape=(image_size, image_size, 3), encoding_format=encoding),
      'au_occurrence': tfds.features.Tensor(shape=(num_aus,), dtype=np.int8),
      'au_intensity': tfds.features.Tensor(shape=(num_aus,), dtype=np.float32),
      'landmarks': tfds.features.Tensor(
          shape=(NUM_LANDMARKS, 2), dtype=np.float32),
      'face_found': tfds.features.Scalar(dtype=np.bool_),
      'subject': tfds.features.Text(),
      'sequence': tfds.features.Text(),
      'frame_index': tfds.features.Scalar(dtype=np.int32),
      'view': tfds.features.Scalar(dtype=np.int32),
      'emotion': tfds.features.Scalar(dtype=np.int32),
      'identity': tfds.features.Scalar(dtype=np.int32),
  })
