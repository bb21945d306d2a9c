"""BP4D-Spontaneous: per-frame face crops with 12 AU occurrence labels.

Reads the release as the owners ship it (../shared/reference/datasets.md):
frames `Sequences/<subject>/<task>/<frame>.jpg` (or `Sequences_2D+3D`), labels
`AUCoding/AU_OCC/<subject>_<task>.csv`. Only frames listed in a label file are
written (the coded segments, as every BP4D benchmark uses); code 9 (not
coded) becomes -1. One split per subject (F001 ... M018).
"""

import collections
import os

import numpy as np

from au_jax import aus as aus_lib
from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import labels as labels_lib
from au_jax.preprocess import frame_reading

AUS = aus_lib.DATASET_AUS['bp4d']
FRAME_FOLDERS = ('Sequences', 'Sequences_2D+3D')
LABEL_FOLDER = os.path.join('AUCoding', 'AU_OCC')


class Builder(frames_lib.FaceFramesBuilder):
  """BP4D-Spontaneous face frames with AU occurrence (AUs 1-24, 12 AUs)."""

  DATASET = 'bp4d'
  HOMEPAGE = ('https://www.cs.binghamton.edu/~lijun/Research/3DFE/'
              '3DFE_Analysis.html')
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request BP4D-Spontaneous from Binghamton University
  (https://www.cs.binghamton.edu/~lijun/Research/3DFE/3DFE_Analysis.html) and
  point --manual_dir at the folder that holds:
    Sequences/<subject>/<task>/<frame>.jpg   (or Sequences_2D+3D/...)
        subjects F001-F023, M001-M018; tasks T1-T8; frame names zero-padded
        to 4 digits (3 for M009-M018: both are read).
    AUCoding/AU_OCC/<subject>_<task>.csv      (one per sequence)
        header 0..99 (column N = AU N) or a named header; values 0, 1, 9.
  Every label file needs its frame folder; a missing one is an error naming
  it. A frame folder without a label file is not built and is named in the
  build summary. Labelled frames without an image, and damaged (truncated)
  images, are skipped, counted and named.
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir, self.listing_counts)

  def job_function(self):
    return process_job


def list_jobs(root: str, counts: collections.Counter | None = None
              ) -> dict[str, list[tuple]]:
  """{subject: [(subject, task, label_csv, frame_folder, identity)]}.

  Args:
    root: the manual download.
    counts: gets 'skipped_sequence_without_label_file' and a named problem
      for each frame folder that has no label file.
  """
  folders = [os.path.join(root, f) for f in FRAME_FOLDERS]
  frame_root = next((f for f in folders if os.path.isdir(f)), None)
  if frame_root is None:
    raise FileNotFoundError(f'BP4D frames not found: neither {folders[0]} nor '
                            f'{folders[1]} exists.')
  label_root = frame_reading.require_file(os.path.join(root, LABEL_FOLDER),
                                       'BP4D AU occurrence folder')
  sequences = collections.defaultdict(list)
  for name in sorted(os.listdir(label_root)):
    stem, ext = os.path.splitext(name)
    if ext.lower() != '.csv':
      continue
    if stem.count('_') != 1:
      raise ValueError(f'BP4D label file {name} in {label_root} is not named '
                       '<subject>_<task>.csv.')
    subject, task = stem.split('_')
    folder = frame_reading.require_file(
        os.path.join(frame_root, subject, task),
        f'BP4D frame folder for label file {name}')
    sequences[subject].append((os.path.join(label_root, name), folder, task))
  if not sequences:
    raise FileNotFoundError(f'No <subject>_<task>.csv label files in '
                            f'{label_root}.')
  labelled = {(subject, task) for subject, items in sequences.items()
              for _, _, task in items}
  counts = collections.Counter() if counts is None else counts
  for subject in sorted(os.listdir(frame_root)):
    if not os.path.isdir(os.path.join(frame_root, subject)):
      continue
    for task in sorted(os.listdir(os.path.join(frame_root, subject))):
      if (os.path.isdir(os.path.join(frame_root, subject, task)) and
          (subject, task) not in labelled):
        counts['skipped_sequence_without_label_file'] += 1
        frame_reading.name_problem(
            counts, f'sequence {subject}/{task} not built: no label file '
            f'{os.path.join(label_root, f"{subject}_{task}.csv")}')
  return {subject: [(subject, task, csv, folder, identity)
                    for csv, folder, task in sequences[subject]]
          for identity, subject in enumerate(sorted(sequences))}


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter):
  """Yields (key, example) for one subject/task sequence."""
  subject, task, csv_path, folder, identity = job
  frame_numbers, occurrence, notes = labels_lib.read_occurrence_csv(
      csv_path, AUS)
  counts.update(notes)
  images = frame_reading.sorted_frames(folder, ('.jpg', '.jpeg', '.png'))
  no_intensity = np.full(len(AUS), -1, np.float32)
  for number, labels in zip(frame_numbers, occurrence):
    path = images.get(int(number))
    if path is None:
      counts['skipped_labelled_frame_without_image'] += 1
      continue
    image = frame_reading.read_frame(path, f'{subject}/{task} frame {number}',
                                  counts)
    if image is None:
      continue
    example = frames_lib.frame_example(
        image, None, labels, no_intensity,
        subject=subject, sequence=task, frame_index=int(number), view=0,
        identity=identity, options=options, encoding=encoding, counts=counts)
    yield f'{task}_{int(number):05d}', example
