"""DISFA: left-camera video frames with 12 AU intensities and occurrences.

Reads the release as its owners ship it (../shared/reference/datasets.md):
`Video_LeftCamera/LeftVideoSN001_comp.avi`, labels
`ActionUnit_Labels/SN001/SN001_au<N>.txt` (`frameIdx,intensity` per line, 0-5)
and optional 66-point landmarks `Landmark_Points/SN001/frame_lm/*.mat`
(field `pts`). Frame i of the video pairs with line i of the label files (the
benchmarks' convention). Records carry all 12 labelled AUs; the 8 benchmark
AUs are selected at read time (`aus.label_indices`). Occurrence = intensity
>= 2 (the standard threshold), intensity kept. One split per subject (SN001).
"""

import collections
import os

import numpy as np

from au_jax import aus as aus_lib
from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import labels as labels_lib
from au_jax.preprocess import landmarks as landmarks_lib
from au_jax.preprocess import frame_reading

AUS = aus_lib.DATASET_AUS['disfa']
OCCURRENCE_THRESHOLD = 2.0  # Intensity >= 2 (FACS B) counts as present.
VIDEO_FOLDER = 'Video_LeftCamera'
LABEL_FOLDER = 'ActionUnit_Labels'
LANDMARK_FOLDER = 'Landmark_Points'


class Builder(frames_lib.FaceFramesBuilder):
  """DISFA left-camera frames with AU intensities (12 AUs)."""

  DATASET = 'disfa'
  HOMEPAGE = 'http://mohammadmahoor.com/disfa/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request DISFA from the University of Denver (http://mohammadmahoor.com/disfa/)
  and point --manual_dir at the folder that holds:
    Video_LeftCamera/LeftVideo<subject>_comp.avi      (subjects SN001 ... SN032)
    ActionUnit_Labels/<subject>/<subject>_au<N>.txt   for N in
        1 2 4 5 6 9 12 15 17 20 25 26 ("frameIdx,intensity" lines)
    Landmark_Points/<subject>/frame_lm/*.mat          (optional; 66 points,
        field pts; the file name's last number is the frame index)
  A subject with a label folder but no video, or a missing AU file, is an
  error naming the file, as is a label line that is not "frame,intensity"
  with consecutive frames and an integer 0-5. A video whose length differs
  from its label files is named in the build summary with both counts.
  Video_RightCamera is not read.
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)

  def job_function(self):
    return process_job


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{subject: [(subject, video, [12 label files], landmark folder|None,
  identity)]}, checking every file exists."""
  label_root = frame_reading.require_file(os.path.join(root, LABEL_FOLDER),
                                       'DISFA label folder')
  subjects = sorted(s for s in os.listdir(label_root)
                    if os.path.isdir(os.path.join(label_root, s)))
  if not subjects:
    raise FileNotFoundError(f'No subject folders (SN001 ...) in {label_root}.')
  jobs = {}
  for identity, subject in enumerate(subjects):
    video = frame_reading.require_file(
        os.path.join(root, VIDEO_FOLDER, f'LeftVideo{subject}_comp.avi'),
        f'DISFA left-camera video of {subject}')
    label_files = [frame_reading.require_file(
        os.path.join(label_root, subject, f'{subject}_au{au}.txt'),
        f'DISFA AU{au} label file of {subject}') for au in AUS]
    landmarks = os.path.join(root, LANDMARK_FOLDER, subject, 'frame_lm')
    jobs[subject] = [(subject, video, label_files,
                      landmarks if os.path.isdir(landmarks) else None,
                      identity)]
  return jobs


def read_labels(label_files: list[str], counts: collections.Counter | None
                = None) -> tuple[np.ndarray, np.ndarray]:
  """frames [N] and intensity [N, 12] (-1 where an AU file is shorter).

  Every file must hold consecutive frame numbers with integer intensities
  0-5 (`labels_lib.read_frame_value_lines`), and all must agree on the
  frame numbers they share; a shorter file is named in `counts`.
  """
  columns = [labels_lib.read_frame_value_lines(p, contiguous=True,
                                               valid=(0, 5))
             for p in label_files]
  length = max(len(frames) for frames, _ in columns)
  frames = next(f for f, _ in columns if len(f) == length)
  intensity = np.full((length, len(AUS)), -1, np.float32)
  for c, (path, (au_frames, values)) in enumerate(zip(label_files, columns)):
    if not np.array_equal(au_frames, frames[:len(au_frames)]):
      raise ValueError(f'{path}: frame indices differ from the other AU '
                       'files of this subject (lines must pair by order).')
    if len(au_frames) < length and counts is not None:
      frame_reading.name_problem(
          counts, f'{path} has {len(au_frames)} lines, the longest AU file '
          f'of this subject {length}: its AU is unknown (-1) past line '
          f'{len(au_frames)}')
    intensity[:len(values), c] = values
  return frames, intensity


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter):
  """Yields (key, example) for one subject's left-camera video."""
  subject, video, label_files, landmark_folder, identity = job
  label_frames, intensity = read_labels(label_files, counts)
  counts['label_values_missing'] += int((intensity < 0).sum())
  occurrence = np.where(intensity < 0, -1,
                        intensity >= OCCURRENCE_THRESHOLD).astype(np.int8)
  landmark_files = (frame_reading.sorted_frames(landmark_folder, ('.mat',))
                    if landmark_folder else {})
  label_dir = os.path.dirname(label_files[0])
  for index, image, frame_index, labels, levels in (
      frame_reading.labelled_video_frames(
          video, label_dir, label_frames, occurrence, intensity, subject,
          counts)):
    points = None
    if frame_index in landmark_files:
      points = landmarks_lib.to_ibug68(
          labels_lib.read_points_mat(landmark_files[frame_index]))
    yield f'{index:06d}', frames_lib.frame_example(
        image, points, labels, levels, subject=subject, sequence=subject,
        frame_index=frame_index, view=0, identity=identity, options=options,
        encoding=encoding, counts=counts)
