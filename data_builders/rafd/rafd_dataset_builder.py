"""RaFD (Radboud Faces Database): 8 posed emotions from 5 camera angles.

Reads the owners' download: one JPEG per picture, named (RaFD FAQ)
  Rafd<angle>_<model>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg
e.g. Rafd090_28_Caucasian_male_angry_frontal.jpg: camera angle 000, 045,
090 (frontal), 135 or 180 degrees; model number; emotion one of angry,
contemptuous, disgusted, fearful, happy, neutral, sad, surprised; gaze
frontal, left or right. Files may sit in any sub-folder of the manual dir.

What is written: every picture, one split per model (`01`, `02`, ...),
emotion mapped to aus.EMOTIONS, view = camera angle index + 1 (1 = 000,
3 = 090 frontal, 5 = 180), sequence '<emotion>_<gaze>', frame_index 0,
identity = model number. RaFD has no AU labels (its models were coached by
FACS coders, but no codes ship): the AU set is empty. The 000 and 180 views
are profiles: the frontal Haar detector rarely finds them, so most are
stored as centre crops with face_found=False (counted in the summary).
"""

import collections
import os
import re

import numpy as np

from au_jax import aus as aus_lib
from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import frame_reading

AUS = aus_lib.DATASET_AUS['rafd']
ANGLES = ('000', '045', '090', '135', '180')
# RaFD emotion word -> aus.EMOTIONS name.
EMOTIONS = {'angry': 'anger', 'contemptuous': 'contempt',
            'disgusted': 'disgust', 'fearful': 'fear', 'happy': 'happy',
            'neutral': 'neutral', 'sad': 'sad', 'surprised': 'surprise'}
GAZES = ('frontal', 'left', 'right')
_NAME = re.compile(r'^Rafd(\d{3})_(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)_'
                   r'([A-Za-z]+)\.jpe?g$', re.IGNORECASE)


class Builder(frames_lib.FaceFramesBuilder):
  """RaFD pictures with emotion and camera view (no AU labels)."""

  DATASET = 'rafd'
  HOMEPAGE = 'https://rafd.socsci.ru.nl/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request RaFD from Radboud University (https://rafd.socsci.ru.nl/) and
  point --manual_dir at the folder holding its pictures (any sub-folders):
    Rafd<angle>_<model>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg
        angle 000/045/090/135/180; emotion angry, contemptuous, disgusted,
        fearful, happy, neutral, sad, surprised; gaze frontal/left/right.
  A picture whose name does not follow this pattern is an error naming it
  (rename or move it); a folder without any is an error naming the folder.
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)

  def job_function(self):
    return process_job


def parse_name(path: str) -> dict[str, object]:
  """The fields of a RaFD file name; ValueError naming the file otherwise."""
  name = os.path.basename(path)
  match = _NAME.match(name)
  if match is None:
    raise ValueError(
        f'RaFD picture {path} is not named Rafd<angle>_<model>_<ethnicity>_'
        '<gender>_<emotion>_<gaze>.jpg.')
  angle, model, _, _, emotion, gaze = match.groups()
  emotion, gaze = emotion.lower(), gaze.lower()
  if angle not in ANGLES:
    raise ValueError(f'RaFD picture {path}: camera angle {angle} is not one '
                     f'of {ANGLES}.')
  if emotion not in EMOTIONS:
    raise ValueError(f'RaFD picture {path}: emotion {emotion!r} is not one '
                     f'of {sorted(EMOTIONS)}.')
  if gaze not in GAZES:
    raise ValueError(f'RaFD picture {path}: gaze {gaze!r} is not one of '
                     f'{GAZES}.')
  return {'view': ANGLES.index(angle) + 1, 'model': int(model),
          'emotion': aus_lib.EMOTIONS.index(EMOTIONS[emotion]),
          'sequence': f'{emotion}_{gaze}', 'stem': os.path.splitext(name)[0]}


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{model split: [(path, fields)]} of every RaFD picture under `root`."""
  root = frame_reading.require_file(root, 'RaFD picture folder')
  by_model = collections.defaultdict(list)
  seen = {}
  for folder, _, names in os.walk(root):
    for name in sorted(names):
      if not (name.lower().startswith('rafd') and
              name.lower().endswith(('.jpg', '.jpeg'))):
        continue
      path = os.path.join(folder, name)
      fields = parse_name(path)
      if fields['stem'] in seen:
        raise ValueError(f'RaFD picture {fields["stem"]} is in the manual '
                         f'dir twice: {seen[fields["stem"]]} and {path}.')
      seen[fields['stem']] = path
      by_model[f'{fields["model"]:02d}'].append((path, fields))
  if not by_model:
    raise FileNotFoundError(
        f'No RaFD pictures (Rafd<angle>_<model>_..._<gaze>.jpg) under '
        f'{root}.')
  return {model: sorted(items, key=lambda item: item[1]['stem'])
          for model, items in sorted(by_model.items())}


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter):
  """Yields (key, example) for one picture."""
  path, fields = job
  image = frame_reading.read_frame(path, fields['stem'], counts)
  if image is None:
    return
  none = np.zeros(len(AUS), np.int8)
  example = frames_lib.frame_example(
      image, None, none, none.astype(np.float32),
      subject=f'{fields["model"]:02d}', sequence=fields['sequence'],
      frame_index=0, view=fields['view'], identity=fields['model'],
      options=options, encoding=encoding, counts=counts)
  example['emotion'] = int(fields['emotion'])
  yield fields['stem'], example
