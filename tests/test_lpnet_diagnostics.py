"""docs/lpnet_pnet_diagnostics.py: P-Net statistics of a (tiny, untrained)
LP-Net run and the landmark probe, against hand computations."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax import models
from au_jax import runs
from au_jax import train
from au_jax.data import input_pipeline
from au_jax.models import lpnet
from au_jax.predict import run as run_lib
from configs import lpnet as lpnet_config
from docs import lpnet_pnet_diagnostics as diag

PNET = runs.RunKey(1, stage='pnet')


def _test_config(data_dir: str):
  config = runs.run_config(lpnet_config.get_config('test'), PNET)
  config.data_dir = data_dir
  return config


@pytest.fixture(scope='module')
def pnet_run(tiny_data_dir, tmp_path_factory):
  """A stage_pnet run directory holding freshly initialised weights (no
  training: the statistics only need a restorable P-Net model)."""
  config = _test_config(tiny_data_dir)
  model = models.create(config)
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0), train.example_batch(config))
  directory = runs.run_dir(config, str(tmp_path_factory.mktemp('work')), PNET)
  os.makedirs(directory)
  checkpointing.write_config(config, directory)
  checkpointing.save_weights_only(directory, dict(variables), 2, {}, 2)
  return directory


def _fold(config):
  return input_pipeline.fold_data(
      config, input_pipeline.open_dataset(config), 1)


# ---------------------------------------------------------- hand-made values


def test_feature_statistics_of_hand_made_vectors():
  au_feature = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
  shape_feature = np.array([[0.0, 2.0], [1.0, 1.0], [3.0, 4.0], [-1.0, 0.0]])
  stats = diag.feature_statistics(au_feature, shape_feature)
  # |cos|: orthogonal 0, parallel 1, zero f_au 0, opposite 1.
  assert stats['abs_cos'] == pytest.approx(2.0 / 4.0)
  assert stats['shape_feature_norm'] == pytest.approx(
      (2.0 + np.sqrt(2.0) + 5.0 + 1.0) / 4.0)
  assert stats['au_feature_norm'] == pytest.approx(
      (1.0 + np.sqrt(2.0) + 0.0 + 2.0) / 4.0)
  # L_r = mean |f_au . f_s| = (0 + 2 + 0 + 2) / 4.
  assert stats['orthogonality_loss'] == pytest.approx(1.0)


def test_pnet_statistics_use_only_frames_with_a_shape():
  outputs = {
      'terms': np.array([[1.0, 5.0], [3.0, 5.0], [100.0, -100.0]]),
      'head_logits': np.array([[0.0, 1.0], [0.0, 3.0], [9.0, 9.0]]),
      'shape_feature': np.ones((3, 4)), 'au_feature': np.ones((3, 4)),
      'pnet_input': np.array([[1.0, -2.0], [3.0, -2.0], [50.0, 50.0]]),
      'valid': np.array([True, True, False])}
  stats = diag.pnet_statistics(outputs, (1, 2))
  assert (stats['frames'], stats['frames_with_shape']) == (3, 2)
  assert stats['terms_std'] == {'1': 1.0, '2': 0.0}
  assert stats['terms_std_mean'] == 0.5
  assert stats['head_logits_std'] == {'1': 0.0, '2': 1.0}
  assert stats['input_mean_abs'] == pytest.approx((1 + 2 + 3 + 2) / 4)
  assert stats['input_std'] == pytest.approx((1.0 + 0.0) / 2)
  assert stats['orthogonality_loss'] == pytest.approx(4.0)
  assert stats['abs_cos'] == pytest.approx(1.0)


def test_probe_f1_on_separable_and_one_class_labels():
  rng = np.random.default_rng(0)
  train_x = rng.normal(size=(60, 3)) + 10.0  # Not centred: z-scoring needed.
  test_x = rng.normal(size=(40, 3)) + 10.0
  def labels(x):
    return np.stack([(x[:, 0] > 10.0), np.zeros(len(x), bool)],
                    axis=1).astype(np.int32)
  train_labels, test_labels = labels(train_x), labels(test_x)
  test_labels[0, 0] = -1  # Unknown: not counted.
  result = diag.probe_f1(train_x, train_labels, test_x, test_labels, (1, 2))
  positives = int((test_labels[:, 0] == 1).sum())
  negatives = int((test_labels[:, 0] == 0).sum())
  assert result['f1']['1'] > 90.0
  # AU 2 has only negatives: predicted absent, F1 0 by convention.
  assert result['f1']['2'] == 0.0
  assert result['all_present_f1']['1'] == pytest.approx(
      100.0 * 2 * positives / (2 * positives + negatives))
  assert result['all_present_f1']['2'] == 0.0
  assert result['mean_f1'] == pytest.approx(result['f1']['1'] / 2)
  assert (result['train_frames'], result['test_frames']) == (60, 40)


# ------------------------------------------------------------ tiny dataset


def test_probe_reads_pnet_input_and_hand_checked_floor(tiny_data_dir):
  config = _test_config(tiny_data_dir)
  data = _fold(config)
  # The probe's x (stored landmarks) is P-Net's input on the evaluation
  # crop, and its labels are evaluation's labels.
  x, labels = diag.landmark_features(data, 'test')
  crop_landmarks, crop_labels = [], []
  for batch in input_pipeline.model_batches(config, data, 'test'):
    keep = np.asarray(batch['mask'])
    crop_landmarks.append(np.asarray(batch['landmarks'])[keep])
    crop_labels.append(np.asarray(batch['au_occurrence'])[keep])
  crop_x, _ = diag.pnet_input(np.concatenate(crop_landmarks))
  np.testing.assert_allclose(x, crop_x, atol=1e-5)
  assert np.abs(x).mean() > 0.1  # Not all absent/zero.
  crop_labels = np.concatenate(crop_labels)
  np.testing.assert_array_equal(labels, crop_labels)

  result = diag.landmark_probe(config, data)
  positives = (crop_labels == 1).sum(axis=0)
  negatives = (crop_labels == 0).sum(axis=0)
  floor = np.where(positives > 0,
                   200.0 * positives / (2 * positives + negatives), 0.0)
  np.testing.assert_allclose(
      [result['all_present_f1'][str(a)] for a in config.aus], floor)
  assert result['mean_all_present_f1'] == pytest.approx(floor.mean())
  assert result['test_frames'] == len(crop_labels)
  train_frames = input_pipeline.num_frames(data, 'train')
  assert result['train_frames'] == (train_frames + 1) // 2
  f1 = np.array(list(result['f1'].values()))
  assert ((f1 >= 0) & (f1 <= 100)).all()
  assert result['mean_f1'] == pytest.approx(f1.mean())


def test_forward_captures_head_logits_and_zeroed_pnet_has_no_spread(
    pnet_run):
  run = run_lib.load_run(pnet_run)
  batch = next(input_pipeline.model_batches(run.config, _fold(run.config),
                                            'test'))
  forward = jax.jit(functools.partial(diag.forward, run.model))
  out = jax.device_get(forward(run.variables, batch))
  # Eq. 4: logits = L-Net's logits + m; the captured head is L-Net's.
  np.testing.assert_allclose(out['head_logits'] + out['terms'],
                             out['logits'], atol=1e-5)
  aus = run.aus
  assert diag.pnet_statistics(
      {k: v for k, v in out.items() if k != 'logits'},
      aus)['terms_std_mean'] > 1e-4

  # P-Net's output layer zeroed but for a bias: m_j is one constant.
  params = jax.tree.map(lambda x: x, run.variables['params'])
  terms = dict(params['pnet']['terms'])
  terms['kernel'] = jnp.zeros_like(terms['kernel'])
  terms['bias'] = jnp.full_like(terms['bias'], 0.3)
  params['pnet'] = dict(params['pnet'], terms=terms)
  zeroed = jax.device_get(forward(dict(run.variables, params=params), batch))
  stats = diag.pnet_statistics(
      {k: v for k, v in zeroed.items() if k != 'logits'}, aus)
  assert stats['terms_std'] == {str(a): 0.0 for a in aus}
  assert stats['terms_std_mean'] == 0.0
  np.testing.assert_array_equal(zeroed['head_logits'], out['head_logits'])
  assert stats['head_logits_std_mean'] > 0.0


def test_diagnostics_of_a_run_from_its_fold_directory(pnet_run):
  result = diag.diagnostics(os.path.dirname(pnet_run), None, frames=12)
  assert result['run'] == pnet_run
  assert (result['fold'], result['test_subjects']) == (1, ['S01', 'S04'])
  pnet = result['pnet']
  assert (pnet['head'], pnet['step'], pnet['frames']) == ('lnet', 2, 12)
  assert pnet['frames_with_shape'] == 12
  assert set(pnet['terms_std']) == {str(a) for a in
                                    lpnet_config.get_config('test').aus}
  assert 0.0 <= pnet['abs_cos'] <= 1.0
  assert pnet['shape_feature_norm'] > 0.0
  assert result['probe']['test_frames'] == 32


def test_stem_net_head_is_captured_without_lnet():
  config = lpnet_config.get_config('test')
  config.model.use_lnet = False
  model = models.create(config)
  batch = dict(train.example_batch(config, 2))
  landmarks = np.random.default_rng(0).uniform(
      10, 50, size=(2, 68, 2)).astype(np.float32)
  landmarks[:, 36:42] = [20.0, 25.0]
  landmarks[:, 42:48] = [40.0, 25.0]
  batch.update(landmarks=jnp.asarray(landmarks),
               mask=jnp.ones((2,), bool))
  variables = model.init(jax.random.key(1), batch, train=False)
  out = diag.forward(model, variables, batch)
  np.testing.assert_allclose(out['head_logits'] + out['terms'],
                             out['logits'], atol=1e-5)
  x, valid = diag.pnet_input(landmarks)
  np.testing.assert_array_equal(out['pnet_input'], x)
  assert valid.all() and np.asarray(out['valid']).all()
  expected, _ = lpnet.normalise_landmarks(jnp.asarray(landmarks))
  np.testing.assert_array_equal(x, np.asarray(expected).reshape(2, -1))
