"""CK+ (Extended Cohn-Kanade): posed sequences, emotion and peak-frame AUs.

Reads the owners' CK+ distribution (Lucey et al., CVPRW 2010; its README):
  cohn-kanade-images/<S>/<seq>/<S>_<seq>_<frame:08d>.png  every frame
  FACS/<S>/<seq>/<S>_<seq>_<peak:08d>_facs.txt            one per sequence
  Emotion/<S>/<seq>/<S>_<seq>_<peak:08d>_emotion.txt      327 of 593 only
  Landmarks/<S>/<seq>/<S>_<seq>_<frame:08d>_landmarks.txt optional, 68 pts
Each sequence goes from a neutral face (first frame) to the peak expression
(last frame, the one the FACS and Emotion files name).

What is written (the frames the CAUD thesis uses, 2 per sequence, sec.
5.1.1): the first frame with emotion 'neutral' and its AUs unknown (-1; CK+
codes only the peak), and the peak frame with its AUs (every AU of CK_PLUS
set present if listed in the FACS file, else absent) and the sequence's
emotion (-1 when the sequence has no Emotion file). CK+ emotion codes
0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness,
7 surprise are mapped to aus.EMOTIONS. FACS intensity 1-5 (A-E) is stored;
0 in a FACS file means "present, intensity not given" and is stored as -1.
AUs a FACS file lists outside the CK+ set (aus.DATASET_AUS['ck_plus']) are
counted in the build summary. One split per subject (S005 ...), view 0.
"""

import collections
import os
import re

import numpy as np

from au_jax import aus as aus_lib
from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import frame_reading

AUS = aus_lib.DATASET_AUS['ck_plus']
IMAGE_FOLDER = 'cohn-kanade-images'
FACS_FOLDER = 'FACS'
EMOTION_FOLDER = 'Emotion'
LANDMARK_FOLDER = 'Landmarks'
# CK+ emotion code -> name; names as in aus.EMOTIONS ('sadness' is 'sad').
CK_EMOTIONS = ('neutral', 'anger', 'contempt', 'disgust', 'fear', 'happy',
               'sad', 'surprise')
EMOTION_INDEX = tuple(aus_lib.EMOTIONS.index(e) for e in CK_EMOTIONS)
_IMAGE_NAME = re.compile(r'^(S\d+)_(\d+)_(\d+)\.png$', re.IGNORECASE)
_PEAK_NAME = re.compile(r'^(S\d+)_(\d+)_(\d+)_(facs|emotion)\.txt$')


class Builder(frames_lib.FaceFramesBuilder):
  """CK+: first (neutral) and peak frame of every sequence."""

  DATASET = 'ck_plus'
  HOMEPAGE = 'https://www.jeffcohn.net/Resources/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request CK+ from its owners (https://www.jeffcohn.net/Resources/; the
  Extended Cohn-Kanade database) and point --manual_dir at the folder where
  its zip files were extracted, holding:
    cohn-kanade-images/<S>/<seq>/<S>_<seq>_<frame:08d>.png  (images)
    FACS/<S>/<seq>/<S>_<seq>_<peak>_facs.txt   one per sequence: lines
        'AU intensity' in scientific notation (FACS_labels.zip)
    Emotion/<S>/<seq>/<S>_<seq>_<peak>_emotion.txt   one code 0-7 for the
        327 labelled sequences (Emotion_labels.zip)
    Landmarks/<S>/<seq>/<S>_<seq>_<frame>_landmarks.txt   optional, 68
        'x y' lines (Landmarks.zip); without the folder faces are found by
        the Haar detector.
  Every sequence needs its FACS file and its peak image; a missing one is an
  error naming it.
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)

  def job_function(self):
    return process_job


def _peak_file(folder: str, subject: str, sequence: str, kind: str
               ) -> tuple[int, str] | None:
  """(peak frame, path) of the sequence's `kind` ('facs'/'emotion') file,
  None when the folder holds none; a second one is an error."""
  if not os.path.isdir(folder):
    return None
  found = []
  for name in sorted(os.listdir(folder)):
    match = _PEAK_NAME.match(name)
    if match and match.group(4) == kind:
      if (match.group(1), match.group(2)) != (subject, sequence):
        raise ValueError(f'CK+ {kind} file {os.path.join(folder, name)} '
                         f'names {match.group(1)}/{match.group(2)}, but lies '
                         f'in the folder of {subject}/{sequence}.')
      found.append((int(match.group(3)), os.path.join(folder, name)))
  if len(found) > 1:
    raise ValueError(f'CK+ sequence {subject}/{sequence} has {len(found)} '
                     f'{kind} files in {folder}; expected one.')
  return found[0] if found else None


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{subject: [(subject, sequence, frames {n: path}, peak, facs_path,
  emotion_path | None, landmark_folder | None, identity)]}."""
  image_root = frame_reading.require_file(os.path.join(root, IMAGE_FOLDER),
                                       'CK+ image folder')
  facs_root = frame_reading.require_file(os.path.join(root, FACS_FOLDER),
                                      'CK+ FACS label folder')
  emotion_root = frame_reading.require_file(os.path.join(root, EMOTION_FOLDER),
                                         'CK+ emotion label folder')
  landmark_root = os.path.join(root, LANDMARK_FOLDER)
  has_landmarks = os.path.isdir(landmark_root)
  subjects = sorted(s for s in os.listdir(image_root)
                    if os.path.isdir(os.path.join(image_root, s)))
  jobs = {}
  for identity, subject in enumerate(subjects):
    items = []
    for sequence in sorted(os.listdir(os.path.join(image_root, subject))):
      folder = os.path.join(image_root, subject, sequence)
      if not os.path.isdir(folder):
        continue
      frames = {}
      for name in os.listdir(folder):
        match = _IMAGE_NAME.match(name)
        if match:
          frames[int(match.group(3))] = os.path.join(folder, name)
      if not frames:
        continue
      facs = _peak_file(os.path.join(facs_root, subject, sequence), subject,
                        sequence, 'facs')
      if facs is None:
        raise FileNotFoundError(
            f'Missing CK+ FACS file for {subject}/{sequence}: '
            f'{os.path.join(facs_root, subject, sequence)}/{subject}_'
            f'{sequence}_<peak>_facs.txt')
      peak, facs_path = facs
      emotion = _peak_file(os.path.join(emotion_root, subject, sequence),
                           subject, sequence, 'emotion')
      if emotion is not None and emotion[0] != peak:
        raise ValueError(f'CK+ {subject}/{sequence}: emotion file '
                         f'{emotion[1]} names frame {emotion[0]}, the FACS '
                         f'file {facs_path} frame {peak}.')
      if peak not in frames:
        raise FileNotFoundError(
            f'Missing CK+ peak image {os.path.join(folder, f"{subject}_{sequence}_{peak:08d}.png")}'
            f' (named by {facs_path}).')
      items.append((subject, sequence, dict(sorted(frames.items())), peak,
                    facs_path, emotion[1] if emotion else None,
                    os.path.join(landmark_root, subject, sequence)
                    if has_landmarks else None, identity))
    if items:
      jobs[subject] = items
  if not jobs:
    raise FileNotFoundError(f'No CK+ sequences <S>/<seq>/*.png in '
                            f'{image_root}.')
  return jobs


def _numbers(path: str) -> np.ndarray:
  """The whitespace-separated numbers of a CK+ text file, [lines, cols]."""
  with open(path, encoding='utf-8') as f:
    rows = [line.split() for line in f if line.strip()]
  try:
    return np.array([[float(v) for v in row] for row in rows], np.float64)
  except ValueError:
    raise ValueError(f'CK+ file {path} holds a non-number; expected '
                     'whitespace-separated numbers per line.') from None


def read_emotion(path: str) -> int:
  """The aus.EMOTIONS index of a CK+ emotion file (one code 0-7)."""
  values = _numbers(path).ravel()
  if values.size != 1 or values[0] != round(values[0]) or not (
      0 <= values[0] <= 7):
    raise ValueError(f'CK+ emotion file {path} holds {values.tolist()}; '
                     'expected one code 0-7.')
  return EMOTION_INDEX[int(values[0])]


def read_facs(path: str, counts: collections.Counter
              ) -> tuple[np.ndarray, np.ndarray]:
  """(occurrence [C], intensity [C]) at the peak frame over the CK+ AU set:
  listed AUs present (intensity 1-5, or -1 for 0 = not given), the rest
  absent (intensity 0)."""
  table = _numbers(path)
  occurrence = np.zeros(len(AUS), np.int8)
  intensity = np.zeros(len(AUS), np.float32)
  if table.size == 0:
    return occurrence, intensity
  if table.ndim != 2 or table.shape[1] != 2:
    raise ValueError(f'CK+ FACS file {path}: expected lines '
                     f"'AU intensity', got shape {table.shape}.")
  for au, level in table:
    if au != round(au) or level not in (0, 1, 2, 3, 4, 5):
      raise ValueError(f'CK+ FACS file {path}: bad line {au} {level} '
                       '(an AU number and an intensity 0-5).')
    au = int(au)
    if au not in AUS:
      counts[f'ck_plus_au_{au}_outside_set'] += 1
      continue
    occurrence[AUS.index(au)] = 1
    intensity[AUS.index(au)] = float(level) if level > 0 else -1.0
  return occurrence, intensity


def read_landmarks(path: str) -> np.ndarray:
  """[68, 2] (x, y) of a CK+ landmark file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Missing CK+ landmark file {path}.')
  points = _numbers(path)
  if points.shape != (68, 2):
    raise ValueError(f'CK+ landmark file {path} has shape {points.shape}; '
                     'expected 68 lines of x y.')
  return points.astype(np.float32)


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter):
  """Yields (key, example): the first and the peak frame of a sequence."""
  (subject, sequence, frames, peak, facs_path, emotion_path, landmark_folder,
   identity) = job
  occurrence, intensity = read_facs(facs_path, counts)
  emotion = read_emotion(emotion_path) if emotion_path else -1
  if emotion_path is None:
    counts['ck_plus_sequence_without_emotion'] += 1
  unknown = np.full(len(AUS), -1)
  first = min(frames)
  rows = [(first, unknown, unknown, aus_lib.EMOTIONS.index('neutral'))]
  if peak != first:
    rows.append((peak, occurrence, intensity, emotion))
  for number, labels, levels, label in rows:
    path = frames[number]
    image = frame_reading.read_frame(path, f'{subject}/{sequence} frame {number}',
                                  counts)
    if image is None:
      continue
    landmarks = None
    if landmark_folder is not None:
      landmarks = read_landmarks(os.path.join(
          landmark_folder, f'{subject}_{sequence}_{number:08d}_landmarks.txt'))
    example = frames_lib.frame_example(
        image, landmarks, labels, levels, subject=subject, sequence=sequence,
        frame_index=number, view=0, identity=identity, options=options,
        encoding=encoding, counts=counts)
    example['emotion'] = int(label)
    yield f'{sequence}_{number:08d}', example
