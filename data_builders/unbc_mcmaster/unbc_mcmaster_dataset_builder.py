"""UNBC-McMaster Shoulder Pain: frames with 10 AU labels and AAM landmarks.

Reads the release as its owners ship it (../shared/reference/datasets.md):
frames `Images/<subject>/<sequence>/<frame>.png`, 66-point landmarks
`AAM_landmarks/<subject>/<sequence>/<frame>_aam.txt` and per-frame FACS files
`Frame_Labels/FACS/<subject>/<sequence>/<frame>_facs.txt` (an empty file: no
AU active). Every frame is FACS-coded, so absent AUs are 0, not unknown.

Split names: subject folders such as `109-ib109` become `109_ib109` (the
hyphen would be read as a separator in TFDS file names); the `subject`
field keeps the folder name.
"""

import collections
import os


from au_jax import aus as aus_lib
from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import labels as labels_lib
from au_jax.preprocess import landmarks as landmarks_lib
from au_jax.preprocess import frame_reading

AUS = aus_lib.DATASET_AUS['unbc_mcmaster']
IMAGE_FOLDER = 'Images'
LANDMARK_FOLDER = 'AAM_landmarks'
FACS_FOLDER = os.path.join('Frame_Labels', 'FACS')


def split_name(subject_folder: str) -> str:
  """'109-ib109' -> '109_ib109' (TFDS split names avoid '-')."""
  return subject_folder.replace('-', '_')


class Builder(frames_lib.FaceFramesBuilder):
  """UNBC-McMaster Shoulder Pain frames with AU labels (10 AUs)."""

  DATASET = 'unbc_mcmaster'
  HOMEPAGE = 'https://www.jeffcohn.net/Resources/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request the UNBC-McMaster Shoulder Pain Expression Archive from the owners
  (https://www.jeffcohn.net/Resources/) and point --manual_dir at the folder
  that holds:
    Images/<subject>/<sequence>/<frame>.png       (subjects like 042-ll042)
    Frame_Labels/FACS/<subject>/<sequence>/<frame>_facs.txt
        one "AU intensity side1 side2" line per active AU; empty = none
    AAM_landmarks/<subject>/<sequence>/<frame>_aam.txt   (66 "x y" lines)
  Every image needs its FACS file (a missing one is an error naming it); a
  missing landmark file gives -1 landmarks and is counted. A damaged
  (truncated) image is skipped, counted and named in the build summary.
  Frame_Labels/PSPI is not read.
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)

  def job_function(self):
    return process_job


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{split: [(subject, sequence, root, identity)] per sequence}."""
  image_root = frame_reading.require_file(os.path.join(root, IMAGE_FOLDER),
                                       'UNBC image folder')
  frame_reading.require_file(os.path.join(root, FACS_FOLDER),
                          'UNBC FACS label folder')
  subjects = sorted(s for s in os.listdir(image_root)
                    if os.path.isdir(os.path.join(image_root, s)))
  if not subjects:
    raise FileNotFoundError(f'No subject folders in {image_root}.')
  jobs = {}
  for identity, subject in enumerate(subjects):
    sequences = sorted(q for q in os.listdir(os.path.join(image_root, subject))
                       if os.path.isdir(os.path.join(image_root, subject, q)))
    jobs[split_name(subject)] = [(subject, q, root, identity)
                                 for q in sequences]
  return jobs


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter):
  """Yields (key, example) for one sequence."""
  subject, sequence, root, identity = job
  images = frame_reading.sorted_frames(
      os.path.join(root, IMAGE_FOLDER, subject, sequence), ('.png', '.jpg'))
  for number, path in images.items():
    stem = os.path.splitext(os.path.basename(path))[0]
    facs = frame_reading.require_file(
        os.path.join(root, FACS_FOLDER, subject, sequence, f'{stem}_facs.txt'),
        f'UNBC FACS file of {path}')
    occurrence, intensity, ignored = labels_lib.read_unbc_facs(facs, AUS)
    for au in ignored:
      counts[f'au{au}_listed_not_in_set'] += 1
    landmark_path = os.path.join(root, LANDMARK_FOLDER, subject, sequence,
                                 f'{stem}_aam.txt')
    points = None
    if os.path.exists(landmark_path):
      points = landmarks_lib.to_ibug68(
          labels_lib.read_points_text(landmark_path))
    else:
      counts['landmark_file_missing'] += 1
    image = frame_reading.read_frame(
        path, f'{subject}/{sequence} frame {number}', counts)
    if image is None:
      continue
    yield f'{sequence}_{number:05d}', frames_lib.frame_example(
        image, points, occurrence, intensity,
        subject=subject, sequence=sequence, frame_index=number, view=0,
        identity=identity, options=options, encoding=encoding, counts=counts)
