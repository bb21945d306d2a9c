"""Cross-dataset protocol: fold 'all', the shared AUs, where results go, and
one end-to-end run (IdenNet trained on synthetic_au/tiny, tested on the
UNBC-McMaster dummy data over the AUs both label)."""

import json
import os

import numpy as np
import pytest

from au_jax import aus
from au_jax import evaluate
from au_jax.data import folds
from au_jax import metrics
from au_jax import runs
from configs import aunets as aunets_config
from configs import idennet as idennet_config
from au_jax.predict import run as predict_run
from au_jax import prepare
from au_jax import train
from au_jax.data import device_transforms
from au_jax.data import transforms
import hashlib
from au_jax import ablate
from au_jax import checkpointing
from au_jax.methods import idennet as idennet_method
from au_jax import fold_evaluation
from au_jax.data import input_pipeline
from au_jax import methods

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIX = ('S01', 'S02', 'S03', 'S04', 'S05', 'S06')


def test_shared_aus_in_model_order():
  # The poster's scenario: BP4D's 12 AUs tested on UNBC-McMaster.
  assert evaluate.cross_dataset_aus(aus.BP4D_AUS, 'unbc_mcmaster') == (
      4, 6, 7, 10, 12)
  assert evaluate.cross_dataset_aus(aus.DISFA_AUS, 'bp4d') == (1, 2, 4, 6, 12)
  assert evaluate.cross_dataset_aus((12, 4, 1), 'unbc_mcmaster') == (12, 4)


def test_disjoint_aus_are_named():
  with pytest.raises(ValueError, match=(
      r'AUs \(1, 2\) and unbc_mcmaster labels AUs \(4, 6, 7, 9, 10, 12, 20, '
      r'25, 26, 43\); they share no AU')):
    evaluate.cross_dataset_aus((1, 2), 'unbc_mcmaster')
  config = idennet_config.get_config('test')
  config.folds = 'all'
  config.aus = (1, 2)
  config.test_dataset = 'unbc_mcmaster'
  with pytest.raises(ValueError, match='share no AU'):
    runs.plan(config)


def test_fold_all_holds_out_validation_and_tests_nothing():
  got = folds.fold_subjects('synthetic_au', 'all', SIX, num_validation=1)
  # pick_validation: index (2*0 + 1) * 6 // 2 = 3 of the sorted ids.
  assert got == folds.FoldSubjects(
      train=('S01', 'S02', 'S03', 'S05', 'S06'), validation=('S04',),
      test=())
  got = folds.fold_subjects('synthetic_au', 'all', SIX, num_validation=2)
  assert got.validation == ('S02', 'S05') and got.test == ()
  # FERA 2017's challenge-validation splits stay out, as in folds 1-3.
  assert 'VA_F001' not in folds.all_subjects(
      'fera2017', list(folds.PARTS['bp4d'][0] + folds.PARTS['bp4d'][1]
                       + folds.PARTS['bp4d'][2]) + ['VA_F001']).all
  assert folds.test_subjects('unbc_mcmaster', ['109', '042']) == (
      folds.FoldSubjects(train=(), validation=(), test=('042', '109')))
  with pytest.raises(ValueError, match='no train and no test'):
    folds.FoldSubjects(train=(), validation=('S01',), test=())


def test_plan_checks_and_directories(tmp_path):
  config = idennet_config.get_config('test')
  config.test_dataset = 'unbc_mcmaster'
  config.test_dataset_config = 'tiny'
  with pytest.raises(ValueError, match='set --config.folds=all'):
    runs.plan(config)
  config.folds = 'all'
  assert runs.plan(config) == [runs.RunKey('all')]
  workdir = str(tmp_path)
  method = os.path.join(workdir, 'synthetic_au-tiny', 'idennet')
  # Training never reads the test dataset: one run directory...
  assert runs.run_dir(config, workdir, runs.RunKey('all')) == os.path.join(
      method, 'all')
  # ...and each test dataset's results beside it.
  assert runs.test_dir(config, os.path.join(method, 'all')) == os.path.join(
      method, 'all', 'test_unbc_mcmaster-tiny')
  assert runs.results_dir(config, workdir) == os.path.join(
      method, 'test_unbc_mcmaster-tiny')
  config.test_dataset = None
  assert runs.results_dir(config, workdir) == method
  config.test_dataset, config.test_dataset_config = 'synthetic_au', 'tiny'
  with pytest.raises(ValueError, match='is the training data itself'):
    runs.plan(config)


def test_per_au_models_train_only_shared_aus():
  config = aunets_config.get_config('test')
  config.folds = 'all'
  config.test_dataset = 'unbc_mcmaster'
  config.test_dataset_config = 'tiny'
  wanted = tuple(a for a in config.aus if a in aus.UNBC_AUS)
  assert wanted  # The test config's AUs include some UNBC labels.
  assert sorted({k.au for k in runs.plan(config)}) == sorted(wanted)


def test_select_columns():
  predict = evaluate.select_columns(
      lambda batch: np.arange(12.0).reshape(2, 6), [4, 1])
  np.testing.assert_array_equal(predict({}), [[4.0, 1.0], [10.0, 7.0]])
  with_features = evaluate.select_columns(
      lambda batch: (np.arange(6.0).reshape(2, 3), 'f'), [2])
  got, features = with_features({})
  np.testing.assert_array_equal(got, [[2.0], [5.0]])
  assert features == 'f'


@pytest.fixture(scope='module')
def cross_run(tiny_data_dir, tmp_path_factory):
  """IdenNet :test trained on every synthetic_au/tiny subject (S04
  validates), tested on the UNBC-McMaster dummy data (built from
  data_builders/unbc_mcmaster/dummy_data into the shared data_dir)."""
  old = os.environ.get('AU_JAX_BUILD_WORKERS')
  os.environ['AU_JAX_BUILD_WORKERS'] = '0'
  try:
    prepare.ensure_built(
        'unbc_mcmaster', 'tiny', tiny_data_dir,
        os.path.join(ROOT, 'data_builders', 'unbc_mcmaster', 'dummy_data'))
  finally:
    if old is None:
      del os.environ['AU_JAX_BUILD_WORKERS']
    else:
      os.environ['AU_JAX_BUILD_WORKERS'] = old
  config = idennet_config.get_config('test')
  config.data_dir = tiny_data_dir
  config.folds = 'all'
  config.test_dataset = 'unbc_mcmaster'
  config.test_dataset_config = 'tiny'
  workdir = str(tmp_path_factory.mktemp('cross'))
  table = train.train_and_evaluate(config, workdir)
  return config, workdir, table


def test_cross_dataset_run(cross_run):
  config, workdir, table = cross_run
  shared = [4, 6, 7, 10, 12]
  run = runs.run_dir(config, workdir, runs.RunKey('all'))
  test_dir = os.path.join(run, 'test_unbc_mcmaster-tiny')
  assert not os.path.exists(os.path.join(run, 'test_results.json'))
  with open(os.path.join(test_dir, 'test_results.json')) as f:
    results = json.load(f)
  assert results['aus'] == shared and table['aus'] == shared
  assert results['trained_aus'] == list(aus.BP4D_AUS)
  assert results['validation_subjects'] == ['S04']
  # Every UNBC dummy frame once, read straight from the records.
  builder = prepare.get_builder('unbc_mcmaster', 'tiny', config.data_dir)
  subjects = sorted(builder.info.splits)
  assert results['test_subjects'] == subjects
  sources = [builder.as_data_source(split=s) for s in subjects]
  records = [source[i] for source in sources for i in range(len(source))]
  assert results['num_frames'] == len(records) == 6
  saved = np.load(os.path.join(test_dir, 'test_results_predictions.npz'))
  # UNBC's AU order is (4, 6, 7, 9, 10, 12, ...): AUs 4 6 7 10 12 are its
  # columns 0 1 2 4 5.
  np.testing.assert_array_equal(
      saved['labels'], [r['au_occurrence'][[0, 1, 2, 4, 5]] for r in records])
  # The scores are the trained model's BP4D-order outputs 2..6 (AUs 4, 6,
  # 7, 10, 12) on the same frames, computed here without the Evaluator.
  loaded = predict_run.load_run(run)
  resize = transforms.Resize(config.resize_size)
  resized = [resize.map({'image': r['image'], 'landmarks': r['landmarks']})
             for r in records]
  batch = device_transforms.eval_preprocess(
      {k: np.stack([r[k] for r in resized]) for k in ('image', 'landmarks')},
      config)
  logits, _ = loaded.model.apply(loaded.variables, batch, train=False)
  expected = 1 / (1 + np.exp(-np.asarray(logits, np.float64)[:, 2:7]))
  np.testing.assert_allclose(saved['probabilities'], expected, atol=1e-5)
  # Per-AU F1 by metrics.f1_frame at the thresholds the run reports.
  for c, au in enumerate(shared):
    entry = results['per_au'][str(au)]
    predicted = saved['probabilities'][:, c] >= entry['threshold']
    assert entry['f1'] == pytest.approx(100 * metrics.f1_frame(
        saved['labels'][:, [c]], predicted[:, None])[0])
  with open(os.path.join(runs.results_dir(config, workdir),
                         'results.json')) as f:
    assert json.load(f)['mean']['f1'] == pytest.approx(results['mean']['f1'])
  # No within-dataset table was written.
  assert not os.path.exists(os.path.join(runs.method_dir(config, workdir),
                                         'results.json'))


def test_ablation_rows_of_other_folds_never_share_runs(tmp_path):
  config = idennet_config.get_config('test')
  within = ablate.run_chain(config, str(tmp_path))
  # Fold 1 adds no fold prefix: the hash is the fingerprint and the step
  # count alone.
  fingerprint = checkpointing.fingerprint(
      runs.run_config(config, runs.RunKey(1)))['hash']
  assert within[0][0] == hashlib.sha256(
      f'{fingerprint};steps {config.num_train_steps}'.encode()
  ).hexdigest()[:16]
  config.folds = 'all'
  config.test_dataset = 'unbc_mcmaster'
  cross = ablate.run_chain(config, str(tmp_path))
  assert cross[0][0] != within[0][0]
  path = ablate.results_path(config, str(tmp_path))
  assert path.endswith(os.path.join('idennet', 'test_unbc_mcmaster',
                                    'results.json'))
  assert ablate.path_tail(path) == 'test_unbc_mcmaster'
  config.test_dataset = None
  assert ablate.path_tail(ablate.results_path(config, str(tmp_path))) == ''


def test_run_features_of_a_trained_run(cross_run):
  config, workdir, _ = cross_run
  got = idennet_method.run_features(
      runs.run_dir(config, workdir, runs.RunKey('all')))
  # A fold-'all' run has no test subjects: its validation subject S04's
  # 2 videos x 8 frames; features are fc6 - fc5, hidden_size 32 / 2 (MFM).
  assert got['features'].shape == (16, 16)
  assert set(got['subject'].tolist()) == {'S04'}
  assert len(set(got['sequence'].tolist())) == 2
  assert got['labels'].shape == (16, len(aus.BP4D_AUS))
  np.testing.assert_array_equal(got['aus'], aus.BP4D_AUS)
  assert np.isfinite(got['features']).all()


def test_fold_all_without_test_dataset_tests_nothing(tmp_path):
  config = idennet_config.get_config('test')
  config.folds = 'all'  # e.g. a pretraining run for another's init_from.
  data = input_pipeline.FoldData(
      None, folds.fold_subjects('synthetic_au', 'all', SIX, 1),
      np.arange(len(config.aus)))
  evaluator = fold_evaluation.Evaluator(config, data, methods.get(config))
  directory = str(tmp_path / 'run')
  assert evaluator.test_results(None, directory, {'run': 'all'}) == {
      'no_test': True, 'run': 'all'}
  assert not os.path.exists(directory)
  workdir = str(tmp_path / 'work')
  assert fold_evaluation.summarise(config, workdir, {
      'all': {'no_test': True}}) == {'no_test': True}
  assert not os.path.exists(runs.method_dir(config, workdir))
