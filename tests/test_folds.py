"""Tests of au_jax.data.folds: standard parts, fold assembly, validation, errors."""

import logging
import random

import pytest

from au_jax.data import folds

BP4D_ALL = [f'F{i:03d}' for i in range(1, 24)] + [
    f'M{i:03d}' for i in range(1, 19)]
# DISFA's public release numbers subjects SN001-SN032 without 14, 15, 19,
# 20 and 22.
DISFA_ALL = [f'SN{i:03d}' for i in range(1, 33)
             if i not in (14, 15, 19, 20, 22)]


def _listed(dataset):
  return [s for part in folds.PARTS[dataset] for s in part]


@pytest.mark.parametrize('dataset,subjects,sizes', [
    ('bp4d', BP4D_ALL, (14, 14, 13)),
    ('disfa', DISFA_ALL, (9, 9, 9)),
])
def test_standard_parts(dataset, subjects, sizes):
  listed = _listed(dataset)
  assert len(listed) == len(set(listed)) == len(subjects)  # 41 / 27, disjoint
  assert sorted(listed) == sorted(subjects)
  assert tuple(len(part) for part in folds.PARTS[dataset]) == sizes


def test_parts_copied_from_protocols_md():
  # Spot checks against ../shared/reference/protocols.md, first and last ids.
  bp4d, disfa = folds.PARTS['bp4d'], folds.PARTS['disfa']
  assert (bp4d[0][0], bp4d[0][-1]) == ('F001', 'M008')
  assert (bp4d[1][0], bp4d[1][-1]) == ('M011', 'M005')
  assert (bp4d[2][0], bp4d[2][-1]) == ('F007', 'F014')
  assert (disfa[0][0], disfa[1][0], disfa[2][-1]) == ('SN002', 'SN013',
                                                       'SN004')


@pytest.mark.parametrize('dataset,subjects', [
    ('bp4d', BP4D_ALL), ('disfa', DISFA_ALL), ('fera2017', BP4D_ALL)])
@pytest.mark.parametrize('fold', [1, 2, 3])
def test_fold_tests_on_part_k(dataset, subjects, fold):
  parts = folds.PARTS['bp4d' if dataset == 'fera2017' else dataset]
  got = folds.fold_subjects(dataset, fold, subjects)
  assert got.test == tuple(sorted(parts[fold - 1]))
  others = [s for k, p in enumerate(parts) if k != fold - 1 for s in p]
  assert got.train == tuple(sorted(others))
  assert got.validation == ()


def test_validation_from_training_parts_only():
  got = folds.fold_subjects('bp4d', 1, BP4D_ALL, num_validation=3)
  # Sorted training ids (parts 2 + 3) are F003..F022 (15) then M002..M018
  # (12); picks at floor((2i + 1) * 27 / 6) = 4, 13, 22.
  assert got.validation == ('F007', 'F021', 'M013')
  assert got.test == tuple(sorted(folds.PARTS['bp4d'][0]))
  assert len(got.train) == 27 - 3
  assert not set(got.validation) & set(folds.PARTS['bp4d'][0])
  assert set(got.train) | set(got.validation) == set(
      folds.PARTS['bp4d'][1] + folds.PARTS['bp4d'][2])
  for fold in (1, 2, 3):
    for v in (1, 2, 5):
      got = folds.fold_subjects('disfa', fold, DISFA_ALL, num_validation=v)
      assert len(got.validation) == v
      assert not set(got.validation) & set(folds.PARTS['disfa'][fold - 1])


def test_deterministic_and_order_free():
  shuffled = list(BP4D_ALL)
  random.Random(0).shuffle(shuffled)
  first = folds.fold_subjects('bp4d', 3, BP4D_ALL, num_validation=2)
  assert folds.fold_subjects('bp4d', 3, shuffled, num_validation=2) == first
  assert folds.fold_subjects('bp4d', 3, BP4D_ALL, num_validation=2) == first


@pytest.mark.parametrize('fold', [0, 4, -1])
def test_fold_out_of_range(fold):
  with pytest.raises(ValueError, match=rf'fold {fold} .*1\.\.3'):
    folds.fold_subjects('bp4d', fold, BP4D_ALL)


def test_missing_subject_strict_and_not(caplog):
  available = [s for s in BP4D_ALL if s not in ('F001', 'M018')]
  with pytest.raises(ValueError, match=r"\['F001', 'M018'\]"):
    folds.fold_subjects('bp4d', 1, available)
  with caplog.at_level(logging.WARNING):
    got = folds.fold_subjects('bp4d', 1, available, strict=False)
  assert 'dropping 2 listed subjects' in caplog.text
  assert 'F001' not in got.test and len(got.test) == 13
  assert 'M018' not in got.train and len(got.train) == 26


def test_unlisted_subject_is_an_error_even_when_not_strict():
  for strict in (True, False):
    with pytest.raises(ValueError, match=r"\['X999'\]"):
      folds.fold_subjects('disfa', 1, DISFA_ALL + ['X999'], strict=strict)


def test_empty_test_part():
  part1 = list(folds.PARTS['disfa'][0])
  assert folds.fold_subjects('disfa', 2, part1 + ['SN013'],
                             strict=False).test == ('SN013',)
  with pytest.raises(ValueError, match='part 3 .*no available subject'):
    folds.fold_subjects('disfa', 3, part1, strict=False)
  with pytest.raises(ValueError, match='part 3'):
    folds.fold_subjects('synthetic_au', 3, ['S01', 'S02'])


def test_overlapping_parts_and_fold_subjects():
  with pytest.raises(ValueError, match=r"\['B'\] .*part 1 and part 2"):
    folds.subjects_for_fold([('A', 'B'), ('B', 'C'), ('D',)], 1)
  with pytest.raises(ValueError, match=r"\['C'\] .*train and test"):
    folds.FoldSubjects(train=('A', 'C'), validation=(), test=('C',))
  with pytest.raises(ValueError, match=r"\['A'\] .*train and validation"):
    folds.FoldSubjects(train=('A',), validation=('A',), test=('C',))
  with pytest.raises(ValueError, match='repeats'):
    folds.FoldSubjects(train=('A', 'A'), validation=(), test=('C',))
  with pytest.raises(ValueError, match='repeats'):
    folds.fold_subjects('synthetic_au', 1, ['S01', 'S01', 'S02', 'S03'])


def test_fold_subjects_sorts():
  got = folds.FoldSubjects(train=['B', 'A'], validation=['D'], test=['C'])
  assert got.train == ('A', 'B') and got.all == ('A', 'B', 'C', 'D')


def test_num_validation_bounds():
  subjects = [f'S{i:02d}' for i in range(1, 7)]  # 2 per part, 4 training
  assert len(folds.fold_subjects('synthetic_au', 1, subjects,
                                 num_validation=3).train) == 1
  with pytest.raises(ValueError, match='num_validation=4 .*4 training'):
    folds.fold_subjects('synthetic_au', 1, subjects, num_validation=4)
  with pytest.raises(ValueError, match='num_validation'):
    folds.fold_subjects('synthetic_au', 1, subjects, num_validation=-1)


def test_round_robin_rule():
  subjects = [f'S{i:02d}' for i in range(1, 25)]
  parts = folds.dataset_parts('synthetic_au', list(reversed(subjects)))
  assert tuple(len(p) for p in parts) == (8, 8, 8)
  assert parts[0] == ('S01', 'S04', 'S07', 'S10', 'S13', 'S16', 'S19', 'S22')
  assert parts[2][-1] == 'S24'
  unbc = [f'{i:03d}-x{i:03d}' for i in range(100, 125)]  # 25 subjects
  parts = folds.dataset_parts('unbc_mcmaster', unbc)
  assert tuple(len(p) for p in parts) == (9, 8, 8)
  got = folds.fold_subjects('synthetic_au', 2, subjects, num_validation=1)
  assert got.test == tuple(subjects[1::3])  # S02, S05, ..., S23


def test_unknown_dataset():
  with pytest.raises(ValueError, match="'ckplus'"):
    folds.fold_subjects('ckplus', 1, ['S01'])


def test_split_spec():
  assert folds.split_spec(('S01', 'S02')) == 'S01+S02'
  assert folds.split_spec(['042-ll042']) == '042-ll042'
  with pytest.raises(ValueError, match='no subjects'):
    folds.split_spec([])
  with pytest.raises(ValueError, match='not valid TFDS split names'):
    folds.split_spec(['S01+S02'])
  with pytest.raises(TypeError):
    folds.split_spec('S01')


@pytest.mark.parametrize('value,expected', [
    ('1,2,3', (1, 2, 3)), ('(1, 2, 3)', (1, 2, 3)), ('[3, 1]', (3, 1)),
    ('2', (2,)), (2, (2,)), ((1, 3), (1, 3)), ([2], (2,)), (' 1 , 2 ', (1, 2)),
    ('(2,)', (2,)),
])
def test_parse_folds(value, expected):
  assert folds.parse_folds(value) == expected


@pytest.mark.parametrize('value,message', [
    ('0', 'out of range'), (4, 'out of range'), ('1,4', 'fold 4'),
    ('a', 'cannot parse'), ('1,,2', 'cannot parse'), ('', 'cannot parse'),
    (1.0, 'cannot parse'), (None, 'cannot parse'), (True, 'fold numbers'),
    ([], 'names no fold'), ('1,1', 'repeats'), ([1, '2'], 'not an int'),
])
def test_parse_folds_errors(value, message):
  with pytest.raises(ValueError, match=message):
    folds.parse_folds(value)


def test_fera2017_reuses_bp4d_parts():
  assert folds.fold_subjects('fera2017', 2, BP4D_ALL, num_validation=1) == (
      folds.fold_subjects('bp4d', 2, BP4D_ALL, num_validation=1))
  # Subjects outside BP4D (e.g. another partition's ids) are named.
  with pytest.raises(ValueError, match=r"\['V001'\] .*bp4d parts"):
    folds.fold_subjects('fera2017', 1, BP4D_ALL + ['V001'])


def test_numpy_fold_numbers():
  np = pytest.importorskip('numpy')
  assert folds.check_fold(np.int64(2)) == 2
  assert folds.parse_folds(np.array([1, 3]).tolist()) == (1, 3)
  assert folds.parse_folds(np.int32(3)) == (3,)


def test_fera2017_challenge_validation_splits_are_left_out():
  available = ['F001', 'M007', 'M011', 'F007', 'VA_F001', 'VA_M011']
  subjects = folds.fold_subjects('fera2017', 1, available, strict=False)
  assert subjects.test == ('F001', 'M007')
  assert not any(s.startswith('VA_') for s in subjects.all)
