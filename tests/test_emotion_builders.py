"""Emotion-pretraining builders on their dummy data: CK+.

The dummy release (data_builders/ck_plus/make_dummy_data.py) is built once
(config `tiny`, in-process); records are checked against values written
out by hand from its SEQUENCES table and CK+'s published emotion codes.
"""

import collections
import os
import shutil

import numpy as np
import pytest

from au_jax import aus
from au_jax.data import folds
from au_jax.preprocess import face as face_lib
from data_builders.ck_plus import ck_plus_dataset_builder as ck
from data_builders.rafd import rafd_dataset_builder as rafd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(ROOT, 'data_builders', 'ck_plus', 'dummy_data')
UNKNOWN = [-1] * len(aus.DATASET_AUS['ck_plus'])
from builder_testing import build  # pylint: disable=g-import-not-at-top,wrong-import-position


def _build(data_dir, manual_dir=DUMMY):
  return build('ck_plus', 'tiny', data_dir, manual_dir)


@pytest.fixture(scope='module')
def rows(tmp_path_factory):
  builder = _build(str(tmp_path_factory.mktemp('ck')))
  out = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split=split)
    for i in range(len(source)):
      row = source[i]
      out[(split, row['sequence'].decode(), int(row['frame_index']))] = row
  return out


def _vector(values):
  """{AU: value} over the CK+ AU set, other AUs `values['rest']`."""
  return [values.get(au, values['rest']) for au in aus.DATASET_AUS['ck_plus']]


def test_ck_plus_first_and_peak_frames(rows):
  # Two frames per sequence (first, peak), one split per subject.
  assert sorted(rows) == [('S005', '001', 1), ('S005', '001', 4),
                          ('S005', '002', 1), ('S005', '002', 3),
                          ('S010', '004', 1), ('S010', '004', 5)]
  for (subject, sequence, frame), row in rows.items():
    assert row['image'].shape == (64, 64, 3) and row['view'] == 0
    assert row['subject'].decode() == subject
    assert row['identity'] == {'S005': 0, 'S010': 1}[subject]
    assert row['face_found']
    if frame == 1:  # The neutral first frame: AUs not coded.
      assert row['emotion'] == 0  # aus.EMOTIONS[0] == 'neutral'
      assert row['au_occurrence'].tolist() == UNKNOWN
  # S005/001 peak: CK+ code 3 = disgust; FACS lines 1 0, 4 3, 9 2, 17 4,
  # 38 1 (AU38 is outside the set; 0 = present, intensity not given).
  peak = rows[('S005', '001', 4)]
  assert aus.EMOTIONS[peak['emotion']] == 'disgust'
  assert peak['au_occurrence'].tolist() == _vector(
      {1: 1, 4: 1, 9: 1, 17: 1, 'rest': 0})
  assert peak['au_intensity'].tolist() == _vector(
      {1: -1, 4: 3, 9: 2, 17: 4, 'rest': 0})
  # S005/002 has no Emotion file: its peak's emotion is unknown.
  peak = rows[('S005', '002', 3)]
  assert peak['emotion'] == -1
  assert peak['au_occurrence'].tolist() == _vector({12: 1, 25: 1, 'rest': 0})
  # S010/004: CK+ code 5 = happy; single-channel PNGs read as colour.
  peak = rows[('S010', '004', 5)]
  assert aus.EMOTIONS[peak['emotion']] == 'happy'
  assert peak['au_intensity'].tolist() == _vector(
      {6: -1, 12: 4, 25: 2, 'rest': 0})
  image = peak['image'].astype(int)
  assert (image[..., 0] == image[..., 1]).all()
  # The shipped 68-point landmarks place the eyes in the crop.
  eyes = peak['landmarks'][36:48]
  assert ((eyes > 0) & (eyes < 64)).all()


def test_emotion_code_table():
  # CK+ README: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear,
  # 5 happy, 6 sadness, 7 surprise.
  names = [aus.EMOTIONS[i] for i in ck.EMOTION_INDEX]
  assert names == ['neutral', 'anger', 'contempt', 'disgust', 'fear',
                   'happy', 'sad', 'surprise']


def _copy(tmp_path):
  root = tmp_path / 'ck'
  shutil.copytree(DUMMY, root)
  return root


@pytest.mark.parametrize('remove, named', [
    ('FACS/S005/002/S005_002_00000003_facs.txt', 'S005/002'),
    ('cohn-kanade-images/S010/004/S010_004_00000005.png',
     'S010_004_00000005.png'),
    ('Emotion', 'Emotion'),
    ('cohn-kanade-images', 'cohn-kanade-images'),
])
def test_missing_file_error_names_it(tmp_path, remove, named):
  root = _copy(tmp_path)
  target = root / remove
  if target.is_dir():
    shutil.rmtree(target)
  else:
    target.unlink()
  with pytest.raises(FileNotFoundError, match=named):
    ck.list_jobs(str(root))


def test_bad_label_files_and_missing_landmarks_are_named(tmp_path):
  root = _copy(tmp_path)
  emotion = root / 'Emotion/S005/001/S005_001_00000004_emotion.txt'
  emotion.write_text('   9.0000000e+00\n')
  with pytest.raises(ValueError, match='S005_001_00000004_emotion.txt'):
    ck.read_emotion(str(emotion))
  facs = root / 'FACS/S005/001/S005_001_00000004_facs.txt'
  facs.write_text('   1.0000000e+00   7.0000000e+00\n')
  with pytest.raises(ValueError, match='S005_001_00000004_facs.txt'):
    ck.read_facs(str(facs), collections.Counter())
  (root / 'Landmarks/S010/004/S010_004_00000005_landmarks.txt').unlink()
  job = ck.list_jobs(str(root))['S010'][0]
  with pytest.raises(FileNotFoundError,
                     match='S010_004_00000005_landmarks.txt'):
    list(ck.process_job(job, face_lib.FaceOptions(image_size=64), 'png',
                        collections.Counter()))


def test_folds_and_instructions():
  parts = folds.dataset_parts('ck_plus', ['S005', 'S010', 'S011', 'S022'])
  assert parts == (('S005', 'S022'), ('S010',), ('S011',))
  for name in ('cohn-kanade-images/', 'FACS/', 'Emotion/', 'Landmarks/'):
    assert name in ck.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


# ---------------------------------------------------------------------------
# RaFD: one picture per (camera angle, emotion, gaze), emotion in the name.

RAFD_DUMMY = os.path.join(ROOT, 'data_builders', 'rafd', 'dummy_data')


def test_rafd_pictures_emotions_and_views(tmp_path):
  builder = build('rafd', 'tiny', str(tmp_path / 'out'), RAFD_DUMMY)
  got = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split=split)
    for i in range(len(source)):
      row = source[i]
      got[(split, row['sequence'].decode())] = (
          int(row['view']), aus.EMOTIONS[row['emotion']], int(row['identity']))
      assert row['au_occurrence'].shape == (0,)  # RaFD ships no AU codes.
  # From the file names: angle 045 -> view 2, 090 -> 3, 180 -> 5; RaFD's
  # words angry/contemptuous/surprised are aus.EMOTIONS anger/contempt/
  # surprise; model number = split and identity.
  assert got == {
      ('01', 'happy_frontal'): (3, 'happy', 1),
      ('01', 'contemptuous_left'): (3, 'contempt', 1),
      ('01', 'sad_right'): (2, 'sad', 1),
      ('01', 'neutral_frontal'): (5, 'neutral', 1),
      ('28', 'angry_frontal'): (3, 'anger', 28),
      ('28', 'surprised_frontal'): (3, 'surprise', 28),
  }
  # Bad names and an empty folder are errors naming the file / folder.
  for name, message in (
      ('Rafd090_03_Caucasian_male_joyful_frontal.jpg', "emotion 'joyful'"),
      ('Rafd030_03_Caucasian_male_happy_frontal.jpg', 'camera angle 030'),
      ('Rafd090_03_male_happy.jpg', 'is not named')):
    root = tmp_path / name
    root.mkdir()
    (root / name).write_bytes(b'')
    with pytest.raises(ValueError, match=name.replace('.', r'\.')) as error:
      rafd.list_jobs(str(root))
    assert message in str(error.value)
  with pytest.raises(FileNotFoundError, match='empty'):
    (tmp_path / 'empty').mkdir()
    rafd.list_jobs(str(tmp_path / 'empty'))
  assert 'Rafd<angle>_<model>' in rafd.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
