"""LFW, CelebA and VGGFace2 identity builders on their dummy_data: records
against the hand-written layouts of make_dummy_data.py, errors naming
missing files, and IdenNet's pair stream drawing from them."""

import os
import shutil

import numpy as np
import pytest

from au_jax import aus
from au_jax.methods import idennet as idennet_method
from data_builders import identity_faces
from data_builders.celeba import celeba_dataset_builder as celeba
from data_builders.celeba import make_dummy_data as celeba_dummy
from data_builders.lfw import lfw_dataset_builder as lfw
from data_builders.lfw import make_dummy_data as lfw_dummy
from data_builders.vggface2 import vggface2_dataset_builder as vggface2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from builder_testing import build, dummy_dir, records  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('identity'))
  builders = {}
  for name in ('lfw', 'celeba', 'vggface2'):
    # No AU_JAX_BUILD_WORKERS: identity sets build in-process by default.
    builders[name] = build(name, 'tiny', data_dir, workers=None)
  return builders


def test_lfw_records(built):
  rows = records(built['lfw'])
  # One split per person, '-' -> '_'; identity = index of the sorted names.
  assert sorted(rows) == ['Ada_Example', 'Jean_Luc_Sample', 'Solo_Person']
  got = {(r['subject'].decode(), r['sequence'].decode(),
          int(r['frame_index']), int(r['identity']))
         for split_rows in rows.values() for r in split_rows}
  assert got == {
      ('Ada_Example', 'Ada_Example_0001', 1, 0),
      ('Ada_Example', 'Ada_Example_0003', 3, 0),
      ('Jean-Luc_Sample', 'Jean-Luc_Sample_0001', 1, 1),
      ('Jean-Luc_Sample', 'Jean-Luc_Sample_0002', 2, 1),
      ('Jean-Luc_Sample', 'Jean-Luc_Sample_0003', 3, 1),
      ('Solo_Person', 'Solo_Person_0001', 1, 2),
  }
  assert sum(len(v) for v in lfw_dummy.PEOPLE.values()) == 6
  # Image-number order within a person.
  assert [int(r['frame_index']) for r in rows['Ada_Example']] == [1, 3]
  for split_rows in rows.values():
    for r in split_rows:
      assert r['image'].shape == (64, 64, 3)
      assert r['au_occurrence'].shape == (0,)  # No AU labels at all.
      assert int(r['emotion']) == -1 and int(r['view']) == 0
  assert aus.dataset_aus('lfw') == ()


def test_celeba_records(built):
  rows = records(built['celeba'])
  assert sorted(rows) == ['id02880', 'id02937', 'id08692']
  got = {split: [(r['subject'].decode(), int(r['identity']),
                  int(r['frame_index']), r['sequence'].decode())
                 for r in split_rows] for split, split_rows in rows.items()}
  assert got == {
      'id02880': [('2880', 2880, 1, '000001'), ('2880', 2880, 4, '000004')],
      'id02937': [('2937', 2937, 2, '000002'), ('2937', 2937, 5, '000005')],
      'id08692': [('8692', 8692, 3, '000003')],
  }
  # 000006.jpg is in the folder but not the identity file: not read.
  assert celeba_dummy.UNLISTED not in [f for r in rows.values()
                                       for f in [int(x['frame_index'])
                                                 for x in r]]


def test_vggface2_records(built):
  rows = records(built['vggface2'])
  got = {split: [(r['subject'].decode(), int(r['identity']),
                  r['sequence'].decode(), int(r['frame_index']))
                 for r in split_rows] for split, split_rows in rows.items()}
  # Train and test partitions both read; frame_index = sorted position.
  assert got == {
      'n000001': [('n000001', 1, '0001_01', 1), ('n000001', 1, '0003_01', 2)],
      'n000002': [('n000002', 2, '0001_01', 1), ('n000002', 2, '0002_01', 2),
                  ('n000002', 2, '0002_02', 3)],
      'n000017': [('n000017', 17, '0005_01', 1)],
  }
  assert all(r['au_occurrence'].shape == (0,)
             for split_rows in rows.values() for r in split_rows)


def test_pairs_from_identity_builders(built):
  for name in ('lfw', 'celeba', 'vggface2'):
    iterator = idennet_method.identity_pairs(
        built[name], num_pairs=2, num_aus=3, resize=72, crop=64, flip=False,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), seed=0)
    batch = next(iterator)
    identity = np.asarray(batch['identity'])
    assert identity.shape == (4,)
    # Two pairs, each of one person with two photos (the one-photo person
    # can form none), both people of a batch distinct (an epoch visits
    # each person once).
    pairs = identity.reshape(2, 2) if identity[0] == identity[1] else (
        identity.reshape(2, 2, order='F'))
    assert (pairs[:, 0] == pairs[:, 1]).all() and pairs[0, 0] != pairs[1, 0]
    usable = {'lfw': {0, 1}, 'celeba': {2880, 2937}, 'vggface2': {1, 2}}[name]
    assert set(identity.tolist()) == usable
    np.testing.assert_array_equal(batch['au_occurrence'], -1)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"none of \['lfw'"):
    lfw.list_jobs(str(tmp_path))
  person = tmp_path / 'lfw' / 'Ada_Example'
  person.mkdir(parents=True)
  (person / 'ada.jpg').write_bytes(b'')
  with pytest.raises(ValueError, match='ada.jpg is not named '
                     'Ada_Example_<NNNN>.jpg'):
    lfw.list_jobs(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='CelebA image folder'):
    celeba.list_jobs(str(tmp_path))
  copy = tmp_path / 'celeba'
  shutil.copytree(dummy_dir('celeba'), copy)
  (copy / 'img_align_celeba' / '000004.jpg').unlink()
  with pytest.raises(FileNotFoundError,
                     match='000004.jpg is listed in the identity file'):
    celeba.list_jobs(str(copy))
  (copy / 'Anno' / 'identity_CelebA.txt').write_text('000001.jpg\n')
  with pytest.raises(ValueError, match='line 1: expected'):
    celeba.list_jobs(str(copy))
  with pytest.raises(FileNotFoundError, match='neither .*train nor .*test'):
    vggface2.list_jobs(str(tmp_path))
  both = tmp_path / 'vgg'
  for partition in ('train', 'test'):
    (both / partition / 'n000002').mkdir(parents=True)
  (both / 'train' / 'n000002' / '0001_01.jpg').write_bytes(b'')
  with pytest.raises(ValueError, match='class n000002 is in both'):
    vggface2.list_jobs(str(both))
  shutil.rmtree(both / 'test')
  (both / 'train' / 'n000002' / 'face.jpg').write_bytes(b'')
  with pytest.raises(ValueError, match='face.jpg is not named'):
    vggface2.list_jobs(str(both))


def test_split_name_collisions_are_named():
  assert identity_faces.split_names(['A-B', 'C.D'], 'x') == {
      'A-B': 'A_B', 'C.D': 'C_D'}
  with pytest.raises(ValueError, match="'A-B' and 'A_B' both become split"):
    identity_faces.split_names(['A-B', 'A_B'], 'LFW')
