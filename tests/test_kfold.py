"""The seeded k-fold protocol (the CAUD thesis' 10-fold BP4D folds) and
average precision in the fold results."""

import hashlib
import json

import ml_collections
import numpy as np
import pytest

from au_jax import config_checks
from au_jax import evaluate
from au_jax import fold_evaluation
from au_jax.data import folds
from au_jax import init_from
from au_jax import runs
from configs import caud as caud_config

BP4D_ALL = [s for part in folds.PARTS['bp4d'] for s in part]
KFOLD10 = folds.Protocol(folds.KFOLD, 10, 0)


def test_kfold_parts_by_hand():
  # sha256 hex digests of '<seed>:<id>' (seed 0): C 131026ad, B 3928c8ec,
  # E 781d1bc7, A 99fd3b03, D a188a9a2 -> order C B E A D, dealt to 2 parts.
  digest = lambda s: hashlib.sha256(f'0:{s}'.encode()).hexdigest()[:8]
  assert [digest(s) for s in 'CBEAD'] == [
      '131026ad', '3928c8ec', '781d1bc7', '99fd3b03', 'a188a9a2']
  assert folds.kfold_parts(['A', 'B', 'C', 'D', 'E'], 2, 0) == (
      ('C', 'E', 'D'), ('B', 'A'))
  # Input order does not matter; another seed deals another order.
  assert folds.kfold_parts(['E', 'D', 'C', 'B', 'A'], 2, 0) == (
      ('C', 'E', 'D'), ('B', 'A'))
  assert folds.kfold_parts(['A', 'B', 'C', 'D', 'E'], 2, 1) != (
      ('C', 'E', 'D'), ('B', 'A'))


def test_bp4d_ten_folds_partition_the_subjects():
  parts = folds.kfold_parts(BP4D_ALL, 10, 0)
  assert sorted(len(p) for p in parts) == [4] * 9 + [5]  # 41 subjects.
  assert sorted(s for p in parts for s in p) == sorted(BP4D_ALL)
  tests = []
  for fold in range(1, 11):
    subjects = folds.fold_subjects('bp4d', fold, BP4D_ALL, num_validation=1,
                                   protocol=KFOLD10)
    assert subjects.test == tuple(sorted(parts[fold - 1]))
    assert len(subjects.validation) == 1
    assert len(subjects.train) == 41 - len(subjects.test) - 1
    assert not set(subjects.validation) & set(subjects.test)
    tests += subjects.test
  assert sorted(tests) == sorted(BP4D_ALL)  # Each subject tested once.
  # Reproducible from the seed; another seed gives other folds.
  assert folds.fold_subjects('bp4d', 3, BP4D_ALL,
                             protocol=KFOLD10).test == tuple(sorted(parts[2]))
  assert folds.fold_subjects(
      'bp4d', 3, BP4D_ALL,
      protocol=folds.Protocol(folds.KFOLD, 10, 7)).test != tuple(
          sorted(parts[2]))
  # The standard protocol is unchanged by the option.
  assert folds.fold_subjects('bp4d', 1, BP4D_ALL) == folds.fold_subjects(
      'bp4d', 1, BP4D_ALL, protocol=folds.Protocol())


def test_kfold_fera_leaves_challenge_validation_out():
  available = BP4D_ALL + ['VA_F001']
  subjects = [folds.fold_subjects('fera2017', k, available,
                                  protocol=KFOLD10).test for k in range(1, 11)]
  assert sorted(s for t in subjects for s in t) == sorted(BP4D_ALL)


@pytest.mark.parametrize('make,message', [
    (lambda: folds.fold_subjects('bp4d', 11, BP4D_ALL, protocol=KFOLD10),
     r'fold 11 is out of range: valid folds are 1\.\.10'),
    (lambda: folds.Protocol(folds.STANDARD, 10), "set fold_protocol='kfold'"),
    (lambda: folds.Protocol(folds.KFOLD, 1), 'num_folds=1'),
    (lambda: folds.Protocol('loso', 3), "fold_protocol='loso'"),
    (lambda: folds.Protocol(folds.KFOLD, 10, -1), 'fold_seed=-1'),
    (lambda: folds.kfold_parts(['A', 'B'], 3, 0), 'needs at least 3'),
    (lambda: folds.fold_subjects('no_such_set', 1, ['A', 'B'],
                                 protocol=KFOLD10),
     "Unknown dataset 'no_such_set'"),
    (lambda: folds.config_protocol({'fold_protocol': 'kfold'}),
     'needs config.num_folds'),
    (lambda: folds.parse_folds('10'), 'out of range'),
])
def test_protocol_errors(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def _kfold_config():
  config = caud_config.get_config('test')
  config.fold_protocol = folds.KFOLD
  config.num_folds = 10
  config.fold_seed = 0
  config.folds = '9,10'
  return config


def test_config_fields_plan_and_directories(tmp_path):
  config = _kfold_config()
  assert folds.parse_folds('1,10', 10) == (1, 10)
  assert runs.folds_of(config) == (9, 10)
  config_checks.check_config(config)
  assert runs.method_dir(config, str(tmp_path)).endswith(
      'synthetic_au-tiny/caud/kfold10_seed0')
  assert runs.run_dir(config, str(tmp_path), 10).endswith(
      'caud/kfold10_seed0/fold_10')
  standard = caud_config.get_config('test')
  assert runs.method_dir(standard, str(tmp_path)).endswith(
      'synthetic_au-tiny/caud')
  assert folds.config_protocol(standard).as_dict() == {
      'name': 'standard', 'num_folds': 3}
  for field, value, message in (
      ('folds', '11', 'fold 11'), ('num_folds', 1, 'num_folds'),
      ('fold_protocol', 'loso', 'fold_protocol'),
      ('fold_seed', -1, 'fold_seed')):
    bad = _kfold_config()
    bad[field] = value
    with pytest.raises(ValueError, match=message):
      config_checks.check_config(bad)
  standard.folds = '10'
  with pytest.raises(ValueError, match='fold 10'):
    config_checks.check_config(standard)


def test_init_from_source_keeps_protocol_only_on_the_same_dataset():
  paper10 = caud_config.get_config('paper10')
  run = runs.run_config(paper10, runs.RunKey(7, au=12))
  # EmoNet on another dataset: its own protocol, trained on everyone.
  assert init_from.source_run_dir(run, '/w') == (
      '/w/synthetic_au-multiview/classify_emotion/all')
  # A source on the same dataset (e.g. an earlier stage) keeps the k-fold.
  same = _kfold_config()
  same.init_from.dataset = 'synthetic_au'
  same.init_from.dataset_config = 'tiny'
  run = runs.run_config(same, runs.RunKey(9))
  run.init_from.fold = None
  assert init_from.source_run_dir(run, '/w') == (
      '/w/synthetic_au-tiny/classify_emotion/kfold10_seed0/fold_9')


def test_results_record_protocol_and_average_precision(tmp_path):
  """summarise writes the protocol and per-AU AP; AP checked against
  scikit-learn (an independent implementation)."""
  sk_metrics = pytest.importorskip('sklearn.metrics')
  config = _kfold_config()
  rng = np.random.default_rng(0)
  by_fold = {}
  for fold in (9, 10):
    labels = rng.integers(-1, 2, size=(40, 2))
    scores = np.round(rng.random((40, 2)), 1)  # Ties on purpose.
    result = evaluate.compute_metrics(labels, scores, config.aus)
    result['test_subjects'] = list(folds.fold_subjects(
        'synthetic_au', fold, [f'S{i:02d}' for i in range(1, 25)],
        protocol=folds.config_protocol(config)).test)
    for c, au in enumerate(config.aus):
      keep = labels[:, c] >= 0
      expected = 100 * sk_metrics.average_precision_score(
          labels[keep, c], scores[keep, c])
      np.testing.assert_allclose(
          result['per_au'][str(au)]['average_precision'], expected)
    by_fold[fold] = result
  table = fold_evaluation.summarise(config, str(tmp_path), by_fold)
  written = json.loads(open(
      f'{runs.method_dir(config, str(tmp_path))}/results.json').read())
  assert written['fold_protocol'] == {'name': 'kfold', 'num_folds': 10,
                                      'seed': 0}
  for c, au in enumerate(config.aus):
    np.testing.assert_allclose(
        written['per_au'][str(au)]['average_precision'],
        np.mean([by_fold[f]['per_au'][str(au)]['average_precision']
                 for f in (9, 10)]))
  assert written['folds']['10']['test_subjects'] == by_fold[10][
      'test_subjects']
  markdown = open(f'{runs.method_dir(config, str(tmp_path))}/results.md'
                  ).read()
  assert '| AUC | AP |' in markdown
  assert table['mean']['average_precision'] == pytest.approx(
      written['mean']['average_precision'])
