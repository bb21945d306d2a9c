"""The frame record every au_jax dataset builder writes (see DESIGN.md).

All builders (synthetic_au, bp4d, disfa, unbc_mcmaster, fera2017) call
`frame_features` so their records are interchangeable: every method reads any
dataset. Splits hold one subject each (split name = subject id) so folds are
chosen at read time, never baked into the files.

`check_record_files` checks the written files before a run reads them.
"""

import os
from typing import Iterable

from absl import logging
from array_record.python import array_record_module
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


class DamagedDatasetError(RuntimeError):
  """A dataset file in the data dir cannot be read (truncated, corrupt)."""


def rebuild_command(builder: tfds.core.DatasetBuilder) -> str:
  """The au_jax.prepare command that rebuilds `builder`'s dataset in place
  (--force: TFDS deletes the built copy first)."""
  command = f'python -m au_jax.prepare {builder.name}'
  if builder.builder_config is not None:
    command += f' --config={builder.builder_config.name}'
  command += f' --data_dir={builder.data_dir_root} --force'
  if getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
    command += ' --manual_dir=<your download>'
  return command


def _file_fault(path: str, expected_records: int) -> str | None:
  """Why the array_record file at `path` cannot be read, or None.

  Reads its footer and record index and the first and last records (with
  group_size 1, as TFDS writes, each a single small chunk): a truncated or
  overwritten file fails one of these without reading its middle.
  """
  if not os.path.exists(path):
    return 'missing'
  try:
    reader = array_record_module.ArrayRecordReader(
        path, 'readahead_buffer_size:0')
  except (RuntimeError, ValueError) as error:
    return _first_line(error)
  fault = _reader_fault(reader, expected_records)
  try:
    reader.close()  # Raises the open error again on a damaged file.
  except (RuntimeError, ValueError) as error:
    fault = fault or _first_line(error)
  return fault


def _reader_fault(reader: array_record_module.ArrayRecordReader,
                  expected_records: int) -> str | None:
  try:
    if not reader.ok():
      # The reader keeps its status to itself; reading gives its message,
      # and fails at once since the index could not be read.
      reader.read_all()
      return 'its record index cannot be read'
    count = reader.num_records()
    if count != expected_records:
      return (f'holds {count} records where dataset_info.json lists '
              f'{expected_records}')
    if count:
      reader.read([0, count - 1])
  except (RuntimeError, ValueError) as error:
    return _first_line(error)
  return None


def _first_line(error: Exception) -> str:
  return str(error).splitlines()[0][:200] if str(error) else repr(error)


def check_record_files(builder: tfds.core.DatasetBuilder,
                       subjects: Iterable[str]) -> None:
  """Checks every array_record file of the splits of `subjects`.

  Each file must exist, open with a readable index holding the record count
  dataset_info.json lists for it, and read its first and last records; a
  damage inside a middle chunk still shows only when that record is read.
  Costs one footer and two records per file (milliseconds), so a run checks
  all the files it will read before it trains.

  Args:
    builder: the built dataset (array_record files).
    subjects: split names (subject ids) the run reads, in any order; each
      is checked once.

  Raises:
    DamagedDatasetError: naming every damaged subject and file, why, and
      the command that rebuilds the dataset.
  """
  subjects = sorted(set(subjects))
  faults = []
  checked = 0
  for subject in subjects:
    split = builder.info.splits.get(subject)
    if split is None:
      faults.append(f'subject {subject}: no such split in '
                    f'{builder.data_dir}/dataset_info.json')
      continue
    for path, length in zip(split.filepaths, split.shard_lengths):
      checked += 1
      fault = _file_fault(os.fspath(path), int(length))
      if fault is not None:
        faults.append(f'subject {subject}: {os.fspath(path)} ({fault})')
  if faults:
    raise DamagedDatasetError(
        f'{len(faults)} damaged or missing record file(s) among the '
        f'{checked} of subjects {subjects} in {builder.data_dir} (truncated '
        'copy, full disk?):\n  ' + '\n  '.join(faults) +
        f'\nRebuild the dataset: {rebuild_command(builder)}')
  logging.info('Checked %d record files of %d subjects in %s.', checked,
               len(subjects), builder.data_dir)
