"""FERA 2017: 9-view rendered videos of BP4D subjects with 10 AU labels.

Reads the challenge release as shipped (../shared/reference/datasets.md):
videos `FERA17_Train_MV/FERA17_TR_<subject>_<task>_<view>.mp4` (views 1-9),
occurrence `Train_Occ/FERA17_TR_<subject>_<task>.csv` shared by all 9 views,
and the same under `FERA17_Valid_MV` / `Valid_Occ` (`FERA17_VA_`). Intensity
files `<Train|Valid>_Int/FERA17_<TR|VA>_<subject>_<task>_AU<nn>_Int.csv` are
read when present (AUs 1 4 6 10 12 14 17; others -1). Videos are streamed
frame by frame (cv2.VideoCapture); frame i pairs with label row i.

Splits: training subjects keep their id (`F001`); validation subjects are
`VA_<id>` (`VA_F001`), so the two partitions can never collide and the
FERA protocol (train on TR, test on VA) is a split-name filter.
"""

import collections
import os
import re

import numpy as np

from au_jax import aus as aus_lib
from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import labels as labels_lib
from au_jax.preprocess import frame_reading

AUS = aus_lib.DATASET_AUS['fera2017']
INTENSITY_AUS = (1, 4, 6, 10, 12, 14, 17)
VIEWS = tuple(range(1, 10))
# partition -> (video folder, occurrence folder, intensity folder, prefix).
PARTITIONS = {
    'TR': ('FERA17_Train_MV', 'Train_Occ', 'Train_Int', ''),
    'VA': ('FERA17_Valid_MV', 'Valid_Occ', 'Valid_Int', 'VA_'),
}
_LABEL_NAME = re.compile(r'^FERA17_(TR|VA)_([A-Za-z0-9]+)_([A-Za-z0-9]+)\.csv$')


class Builder(frames_lib.FaceFramesBuilder):
  """FERA 2017 multi-view frames with AU occurrence (10 AUs), view 1-9."""

  DATASET = 'fera2017'
  HOMEPAGE = 'https://sspnet.eu/fera2017/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request the FERA 2017 challenge data (https://sspnet.eu/fera2017/; BP4D
  licence needed) and point --manual_dir at the folder that holds:
    FERA17_Train_MV/FERA17_TR_<subject>_<task>_<view>.mp4   views 1-9
    Train_Occ/FERA17_TR_<subject>_<task>.csv   header, then frame + 10 AUs
    Train_Int/FERA17_TR_<subject>_<task>_AU<nn>_Int.csv   (optional;
        nn in 01 04 06 10 12 14 17; "frame,intensity" lines)
  and, for the validation partition (optional), the same with
    FERA17_Valid_MV/FERA17_VA_..., Valid_Occ/..., Valid_Int/...
  Each label file needs all 9 view videos; a missing one is an error naming
  it. Occurrence rows must hold consecutive frame numbers and integer codes
  (else an error naming file and line); a video whose length differs from
  its label file is named in the build summary with both counts.
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)

  def job_function(self):
    return process_job


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{split: [(subject, task, view, video, label csv, {AU: intensity csv},
  identity)] per (task, view) video}, checking the videos exist."""
  frame_reading.require_file(os.path.join(root, PARTITIONS['TR'][1]),
                          'FERA 2017 training occurrence folder')
  found = collections.defaultdict(list)
  for partition, (video_dir, occ_dir, int_dir, prefix) in PARTITIONS.items():
    occ_root = os.path.join(root, occ_dir)
    if not os.path.isdir(occ_root):
      continue  # Validation is optional.
    for name in sorted(os.listdir(occ_root)):
      match = _LABEL_NAME.match(name)
      if not match or match.group(1) != partition:
        continue
      _, subject, task = match.groups()
      base = f'FERA17_{partition}_{subject}_{task}'
      intensity = {au: os.path.join(root, int_dir, f'{base}_AU{au:02d}_Int.csv')
                   for au in INTENSITY_AUS}
      intensity = {au: p for au, p in intensity.items() if os.path.exists(p)}
      for view in VIEWS:
        video = frame_reading.require_file(
            os.path.join(root, video_dir, f'{base}_{view}.mp4'),
            f'FERA 2017 view-{view} video for label file {name}')
        found[prefix + subject].append(
            (subject, task, view, video, os.path.join(occ_root, name),
             intensity))
  if not found:
    raise FileNotFoundError(f'No FERA17_TR_<subject>_<task>.csv label files '
                            f'in {os.path.join(root, PARTITIONS["TR"][1])}.')
  return {split: [job + (identity,) for job in found[split]]
          for identity, split in enumerate(sorted(found))}


def read_intensity(files: dict[int, str], frames: np.ndarray,
                   counts: collections.Counter | None = None) -> np.ndarray:
  """[N, 10] float32 intensity per label row, -1 where not given/coded.

  Intensity rows pair by frame number (codes 0-5; 9 = not coded); another
  integer code is unknown and counted, a non-integer one an error.
  """
  counts = collections.Counter() if counts is None else counts
  intensity = np.full((len(frames), len(AUS)), -1, np.float32)
  row_of = {int(f): r for r, f in enumerate(frames)}
  for au, path in files.items():
    au_frames, values = labels_lib.read_frame_value_lines(
        path, contiguous=False)
    for frame, value in zip(au_frames, values):
      if int(frame) not in row_of:
        counts['intensity_rows_without_occurrence_row'] += 1
      elif 0 <= value <= 5:
        intensity[row_of[int(frame)], AUS.index(au)] = value
      elif value != 9:
        counts[f'intensity_code_{int(value)}_as_unknown'] += 1
  return intensity


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter):
  """Yields (key, example) for one (subject, task, view) video."""
  subject, task, view, video, csv_path, intensity_files, identity = job
  label_frames, occurrence, notes = labels_lib.read_occurrence_csv(
      csv_path, AUS, contiguous=True)
  counts.update(notes)
  intensity = read_intensity(intensity_files, label_frames, counts)
  for index, image, frame_index, labels, levels in (
      frame_reading.labelled_video_frames(
          video, csv_path, label_frames, occurrence, intensity,
          f'{subject}/{task} view {view}', counts)):
    yield f'{task}_v{view}_{index:06d}', frames_lib.frame_example(
        image, None, labels, levels, subject=subject, sequence=task,
        frame_index=frame_index, view=view, identity=identity,
        options=options, encoding=encoding, counts=counts)
