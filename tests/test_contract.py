"""The method contract: one loop, run plans, optimiser groups, init_from,
fingerprints, per-frame ids and validation-only decision rules."""

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax import fold_evaluation
from au_jax.data import input_pipeline
from au_jax import methods
from au_jax import models
from au_jax import optim
from au_jax import parallel
from au_jax import postprocess
from au_jax import runs
from au_jax import train
from configs import drml
from absl import flags


def _config(data_dir=None, **overrides):
  config = drml.get_config('test')
  config.data_dir = data_dir
  config.folds = '1'
  for key, value in overrides.items():
    config[key] = value
  return config


# -------------------------------------------------------------- DRML pinned


def test_drml_loss_and_one_update_unchanged_by_the_refactor():
  """Values computed with the trainer before methods/ and optim.py existed
  (commit 0251426, the same fixed batch and keys)."""
  config = drml.get_config('test')
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.normal(size=(8, 66, 66, 3)).astype(np.float32),
      'landmarks': rng.uniform(0, 66, size=(8, 68, 2)).astype(np.float32),
      'au_occurrence': rng.integers(-1, 2, size=(8, 12)).astype(np.int32)}
  model = models.create(config, axis_name=parallel.AXIS_NAME)
  state = train.create_train_state(config, model, jax.random.key(0))
  step = parallel.pmap_step(functools.partial(train.train_step,
                                              config=config))
  p_state, metrics = step(parallel.replicate(state), parallel.shard(batch),
                          parallel.replicate(jax.random.key(1)))
  params = parallel.unreplicate(p_state).params
  assert float(metrics['train_loss'][0]) == pytest.approx(4.905619144439697,
                                                          rel=1e-5)
  total = sum(np.abs(np.asarray(x, np.float64)).sum()
              for x in jax.tree_util.tree_leaves(params))
  assert total == pytest.approx(160447.34914450697, rel=1e-5)
  assert float(params['output']['kernel'][0, 0]) == pytest.approx(
      -0.026674237102270126, rel=1e-4)
  assert float(params['conv1']['kernel'][0, 0, 0, 0]) == pytest.approx(
      -0.013561167754232883, rel=1e-4)


# ----------------------------------------------------------------- optim.py


def _params():
  return {'encoder': {'kernel': jnp.ones((3, 4))},
          'head': {'kernel': jnp.ones((4, 2)), 'bias': jnp.zeros((2,))}}


def _optim_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      optimizer='sgd', learning_rate=0.1, momentum=0.0, weight_decay=0.0,
      lr_schedule='constant', num_train_steps=10, frozen='',
      lr_mults=()))
  config.update(overrides)
  return config


def test_frozen_parameters_get_no_update_and_no_optimiser_state():
  params = _params()
  config = _optim_config(optimizer='adam', frozen='encoder/.*')
  tx = optim.create_optimizer(config, params)
  opt_state = tx.init(params)
  # Adam keeps mu and nu for the 10 trainable scalars only.
  assert optim.state_parameter_count(opt_state) == 2 * (8 + 2)
  mask = optim.trainable_mask(config, params)
  loss = lambda p: sum(jnp.sum(x ** 2) for x in jax.tree_util.tree_leaves(
      optim.stop_frozen_gradients(p, mask)))
  grads = jax.grad(loss)(params)
  np.testing.assert_array_equal(grads['encoder']['kernel'], 0.0)
  np.testing.assert_array_equal(grads['head']['kernel'], 2.0)
  updates, _ = tx.update(grads, opt_state, params)
  np.testing.assert_array_equal(updates['encoder']['kernel'], 0.0)
  assert np.all(np.asarray(updates['head']['kernel']) != 0)


def test_learning_rate_multipliers_scale_each_group():
  params = _params()
  config = _optim_config(lr_mults=(('encoder/.*', 0.5),))
  tx = optim.create_optimizer(config, params)
  grads = jax.tree_util.tree_map(lambda x: jnp.full(x.shape, 2.0), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # SGD: update = -lr * mult * g = -0.1 * 0.5 * 2 and -0.1 * 1 * 2.
  np.testing.assert_allclose(updates['encoder']['kernel'], -0.1)
  np.testing.assert_allclose(updates['head']['kernel'], -0.2)


def test_schedules_step_and_linear():
  step = optim.create_learning_rate(_optim_config(
      lr_schedule='step', lr_decay_steps=5, lr_decay_factor=0.1))
  assert float(step(4)) == pytest.approx(0.1)
  assert float(step(5)) == pytest.approx(0.01)
  linear = optim.create_learning_rate(_optim_config(lr_schedule='linear'))
  assert float(linear(5)) == pytest.approx(0.05)
  assert float(linear(10)) == pytest.approx(0.0)


def test_bad_regex_is_named():
  with pytest.raises(ValueError, match='config.frozen'):
    optim.trainable_mask(_optim_config(frozen='enc(['), _params())


# ------------------------------------------------------------------ runs.py


def _plan_config():
  config = _config(one_model_per=('view', 'au'), views=(5, 1), aus=(1, 2),
                   stage_order=('stem', 'head'))
  config.stages = ml_collections.ConfigDict({
      'stem': {'learning_rate': 0.5}, 'head': {'frozen': 'conv.*'}})
  return config


def test_plan_expands_views_aus_stages_in_training_order():
  config = _plan_config()
  keys = runs.plan(config)
  assert [str(k) for k in keys[:4]] == [
      'fold_1/view_5/au_01/stage_stem', 'fold_1/view_5/au_01/stage_head',
      'fold_1/view_5/au_02/stage_stem', 'fold_1/view_5/au_02/stage_head']
  assert len(keys) == 8 and keys[4].view == 1
  run = runs.run_config(config, keys[0])
  assert run.aus == (1,) and run.views == (5,) and run.learning_rate == 0.5
  assert runs.run_config(config, keys[1]).frozen == 'conv.*'
  assert runs.run_dir(config, '/w', keys[1]) == (
      '/w/synthetic_au-tiny/drml/fold_1/view_05/au_01/stage_head'.replace(
          'view_05', 'view_5'))


def test_stage_overlay_may_not_add_fields():
  config = _plan_config()
  config.stages.head = ml_collections.ConfigDict({'lerning_rate': 0.1})
  with pytest.raises(ValueError, match="stages.head sets config.lerning_rate"):
    runs.run_config(config, runs.RunKey(1, 5, 1, 'head'))


# ----------------------------------------------------------- fingerprints


@pytest.mark.parametrize('field,value', [
    ('dataset_config', 'default'), ('aus', (1, 2)), ('optimizer', 'adam'),
    ('learning_rate', 0.5), ('momentum', 0.5), ('weight_decay', 0.0),
    ('seed', 3), ('crop_size', 60), ('resize_size', 80), ('flip', False),
    ('pixel_std', (1 / 255,) * 3), ('pixel_mean', (0.4, 0.4, 0.4)),
    ('frozen', 'conv1/.*'), ('batch_size', 16), ('lr_schedule', 'linear'),
    ('init_from', ml_collections.ConfigDict({'stage': 'a'})),
    ('views', (5,)), ('tune_thresholds', True), ('best_metric', 'auc'),
])
def test_result_changing_fields_are_fingerprinted(field, value):
  config = _config()
  before = checkpointing.fingerprint(config, 'data:1')
  config[field] = value
  after = checkpointing.fingerprint(config, 'data:1')
  assert before['hash'] != after['hash']
  assert field in checkpointing.differing_fields(before, after)


def test_model_stage_and_data_version_are_fingerprinted():
  config = _config()
  base = checkpointing.fingerprint(config, 'data:1')
  assert base['hash'] != checkpointing.fingerprint(config, 'data:2')['hash']
  config.model.dropout_rate = 0.1
  assert checkpointing.differing_fields(
      base, checkpointing.fingerprint(config, 'data:1')) == ['model']
  staged = _config(stage_order=('pnet',))
  staged.stages = ml_collections.ConfigDict({'pnet': {}})
  staged = runs.run_config(staged, runs.RunKey(1, stage='pnet'))
  base = checkpointing.fingerprint(runs.run_config(_config(), runs.RunKey(1)),
                                   'data:1')
  assert 'run_stage' in checkpointing.differing_fields(
      base, checkpointing.fingerprint(staged, 'data:1'))


@pytest.mark.parametrize('field,value', [
    ('num_train_steps', 99), ('log_every_steps', 7), ('num_workers', 5),
    ('progress_bar', True), ('eval_every_steps', 3),
    ('checkpoint_every_steps', 9), ('median_window', 5),
])
def test_fields_that_only_extend_or_observe_are_not(field, value):
  config = _config()
  before = checkpointing.fingerprint(config)['hash']
  config[field] = value
  assert checkpointing.fingerprint(config)['hash'] == before


# ------------------------------------------------------------- DRML pixels


def test_caffe_pixels_make_the_lrn_act():
  """DRML's LRN (alpha 1e-4, beta 0.75) was tuned for Caffe's 0-255 input;
  on [0, 1] pixels it is the identity. :paper feeds 0-255 minus the mean."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(2, 66, 66, 3)).astype(np.float32)
  ratios = {}
  for name, std in (('unit', 1.0), ('caffe', 1 / 255)):
    config = drml.get_config('test')
    model = models.create(config)
    x = (image / 255 - 0.5) / std
    variables = model.init(jax.random.key(0), {'image': x[:1]}, train=False)
    _, state = model.apply(variables, {'image': x}, train=False,
                           capture_intermediates=True,
                           mutable=['intermediates'])
    inter = state['intermediates']
    region = np.asarray(inter['region2']['__call__'][0])
    pooled = np.asarray(jax.lax.reduce_window(
        region, -np.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID'))
    lrn = np.asarray(inter['pool3_lrn']['__call__'][0])
    ratios[name] = np.abs(lrn).sum() / np.abs(pooled).sum()
  assert ratios['unit'] > 0.999
  assert ratios['caffe'] < 0.9


# ------------------------------------------------------ end to end (tiny)


def test_ids_svm_smoothing_and_tuned_rule_end_to_end(tiny_data_dir, tmp_path):
  config = _config(tiny_data_dir, tune_thresholds=True, median_window='tune',
                   svm_on_fc9=True, min_positives_for_threshold=1)
  results = train.train_fold(config, str(tmp_path), fold=1)
  directory = runs.run_dir(config, str(tmp_path), 1)
  raw = np.load(f'{directory}/test_results_predictions.npz',
                allow_pickle=False)
  n = results['num_frames']
  for key in ('subject', 'sequence', 'view', 'frame_index', 'labels',
              'probabilities', 'predictions'):
    assert len(raw[key]) == n, key
  assert set(raw['subject']) == set(results['test_subjects'])
  saved = json.loads(open(f'{directory}/test_results.json').read())
  assert saved['median_window'] in postprocess.MEDIAN_WINDOWS
  assert saved['checkpoint_step'] == results['checkpoint_step'] > 0
  assert saved['test_subjects'] == results['test_subjects']
  assert 'f1_at_05' in saved['per_au']['1'] and 'svm' in saved
  assert json.loads(open(f'{directory}/config.json').read())['aus'] == list(
      config.aus)


def test_thresholds_never_see_test_labels(tiny_data_dir, tmp_path,
                                          monkeypatch):
  config = _config(tiny_data_dir, tune_thresholds=True,
                   min_positives_for_threshold=1)
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, 1)
  state = train.create_train_state(
      config, models.create(config, axis_name=parallel.AXIS_NAME),
      jax.random.key(0))
  p_state = parallel.replicate(state)
  evaluator = fold_evaluation.Evaluator(config, data, methods.get(config))
  first = evaluator.test_results(p_state, str(tmp_path / 'a'))
  original = input_pipeline.eval_batches
  def scrambled(config, data, split, max_frames=None):
    for batch in original(config, data, split, max_frames):
      if split == 'test':
        batch = dict(batch, au_occurrence=1 - np.abs(batch['au_occurrence']))
      yield batch
  monkeypatch.setattr(input_pipeline, 'eval_batches', scrambled)
  second = evaluator.test_results(p_state, str(tmp_path / 'b'))
  for au in config.aus:
    assert (first['per_au'][str(au)]['threshold']
            == second['per_au'][str(au)]['threshold'])
  assert first['mean']['f1'] != second['mean']['f1']  # Labels did change.


def test_best_checkpoint_is_restored_for_test(tiny_data_dir, tmp_path,
                                              monkeypatch):
  scores = iter([50.0, 10.0])  # Step 2 is best, step 4 is worse.
  monkeypatch.setattr(fold_evaluation.Evaluator, 'validation_scalars',
                      lambda self, p_state: {'val_best': next(scores)})
  results = train.train_fold(_config(tiny_data_dir), str(tmp_path), fold=1)
  assert results['checkpoint_step'] == 2


def test_resume_continues_and_refuses_other_settings(tiny_data_dir,
                                                     tmp_path):
  """With validation subjects and a grain worker: 2 steps, then raised to 4,
  equals 4 steps at once; a changed learning rate is refused by name."""
  if not flags.FLAGS.is_parsed():  # grain workers read absl flags.
    flags.FLAGS.mark_as_parsed()
  config = _config(tiny_data_dir, num_workers=1)
  train.train_fold(config, str(tmp_path / 'whole'), fold=1)
  short = _config(tiny_data_dir, num_workers=1, num_train_steps=2)
  train.train_fold(short, str(tmp_path / 'split'), fold=1)
  train.train_fold(config, str(tmp_path / 'split'), fold=1)
  whole, step_a = checkpointing.restore_raw(
      runs.run_dir(config, str(tmp_path / 'whole'), 1))
  split, step_b = checkpointing.restore_raw(
      runs.run_dir(config, str(tmp_path / 'split'), 1))
  assert step_a == step_b
  for a, b in zip(jax.tree_util.tree_leaves(whole['params']),
                  jax.tree_util.tree_leaves(split['params'])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  other = _config(tiny_data_dir, learning_rate=0.5)
  with pytest.raises(ValueError, match=r'differ: \[.learning_rate.\]'):
    train.train_fold(other, str(tmp_path / 'split'), fold=1)


def test_init_from_loads_matching_parameters_and_reports(tiny_data_dir,
                                                         tmp_path):
  config = _config(tiny_data_dir, num_validation_subjects=0,
                   num_train_steps=2, stage_order=('first', 'second'))
  config.stages = ml_collections.ConfigDict({
      'first': {},
      'second': {'init_from': {'stage': 'first',
                               'params': '(?!output/).*'}}})
  train.train_fold(config, str(tmp_path), fold=1)
  fold_dir = runs.run_dir(config, str(tmp_path), 1)
  report = json.loads(open(f'{fold_dir}/stage_second/init_from.json').read())
  assert report['source'].endswith('fold_1/stage_first')
  assert 'params/conv1/kernel' in report['loaded']
  assert not any('output' in name for name in report['loaded'])


def test_missing_init_from_source_prints_the_command(tiny_data_dir,
                                                     tmp_path):
  config = _config(tiny_data_dir)
  config.init_from = ml_collections.ConfigDict({
      'method': 'classify', 'config': 'configs/emonet.py:cpu',
      'params': '.*'})
  with pytest.raises(FileNotFoundError,
                     match='python -m au_jax.main --config=configs/emonet.py'):
    train.train_fold(config, str(tmp_path), fold=1)


def test_selected_records_source_has_a_stable_repr(tiny_data_dir):
  """grain restores a data iterator only if the source's repr matches: a
  view/holdout selection must repr the same in a restarted process."""
  config = _config(tiny_data_dir, views=(0,))
  reprs = []
  for _ in range(2):
    builder = input_pipeline.open_dataset(config)
    data = input_pipeline.fold_data(config, builder, 1)
    reprs.append(repr(input_pipeline.split_source(data, 'train')))
  assert reprs[0] == reprs[1] and 'records' in reprs[0]
  assert ' at 0x' not in reprs[0]
