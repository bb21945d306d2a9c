"""AUNets' multi-view cascade (au_jax/methods/aunets.py): view per video, routing."""

import jax
import numpy as np
import pytest

from au_jax.methods import aunets as aunets_method
from au_jax import checkpointing
from au_jax import init_from
from au_jax import runs
from au_jax import tables
from au_jax.data import input_pipeline
from au_jax import models
from au_jax import train
from configs import aunets as aunets_config

jax.config.update('jax_disable_most_optimizations', True)


def test_video_views_sum_and_max_by_hand():
  # Video a: frames favour view class 0, 0, 2 -> sum [1.3, 0.5, 1.2]: 0;
  # max per class [0.6, 0.2, 0.9]: 2. Video b: one frame, class 1.
  probabilities = np.array([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2],
                            [0.1, 0.0, 0.9], [0.2, 0.7, 0.1]])
  videos = np.array(['a', 'a', 'a', 'b'])
  np.testing.assert_array_equal(
      aunets_method.video_views(probabilities, videos), [0, 0, 0, 1])
  np.testing.assert_array_equal(
      aunets_method.video_views(probabilities, videos, 'max'), [2, 2, 2, 1])
  with pytest.raises(ValueError, match="rule 'mean'"):
    aunets_method.video_views(probabilities, videos, 'mean')
  # True views: a is class 0, b is class 2. Frames right: 0, 1 (of 4);
  # videos right: a (of 2).
  accuracy = aunets_method.view_accuracy(np.array([0, 0, 0, 2]), probabilities,
                                   videos)
  assert accuracy['frame_accuracy'] == 50.0
  assert accuracy['video_accuracy'] == 50.0
  assert (accuracy['num_frames'], accuracy['num_videos']) == (4, 2)


def test_route_uses_exactly_the_predicted_views_checkpoints():
  routed = np.array([3, 3, 1, 3, 1])  # Frames of videos routed to 3 or 1.
  calls = []

  def score(view, au, rows):
    calls.append((view, au, tuple(rows)))
    # Probability encodes the (view, AU) that scored the frame.
    return (np.full(len(rows), view / 10 + au / 1000), np.ones(len(rows)),
            view / 10, 2 * view - 1)

  out = aunets_method.route(routed, (1, 12), score)
  assert sorted(calls) == [(1, 1, (2, 4)), (1, 12, (2, 4)),
                           (3, 1, (0, 1, 3)), (3, 12, (0, 1, 3))]
  np.testing.assert_allclose(out['probabilities'][:, 1],
                             routed / 10 + 0.012)
  np.testing.assert_array_equal(out['windows'][:, 0], 2 * routed - 1)
  # Threshold view/10 below each probability: every frame positive.
  assert out['predictions'].all()


def test_smooth_routed_stays_within_videos():
  predictions = np.array([[1], [0], [1], [0], [0], [1]], np.int8)
  videos = np.array([0, 0, 0, 1, 1, 1])
  windows = np.array([[3], [3], [3], [1], [1], [1]])
  smoothed = aunets_method.smooth_routed(predictions, windows, videos,
                                   np.array([0, 1, 2, 0, 1, 2]))
  # Video 0, window 3 with edge padding: [1, 1, 1]; video 1 unsmoothed.
  np.testing.assert_array_equal(smoothed[:, 0], [1, 1, 1, 0, 0, 1])


def test_checkpoint_scorer_reads_the_routed_runs(tiny_data_dir, tmp_path):
  """Per-view checkpoints whose output encodes their view: each routed frame
  gets its view's probability, threshold and window."""
  config = aunets_config.get_config('test')
  config.data_dir = tiny_data_dir
  config.aus = (12,)
  config.one_model_per = ('view', 'au')
  config.views = (1, 2)
  workdir = str(tmp_path)
  bias = {1: -1.0, 2: 2.0}
  for view in (1, 2):
    key = runs.RunKey(1, view, 12)
    run_config = runs.run_config(config, key)
    variables = jax.eval_shape(
        lambda b, c=run_config: models.create(c).init(
            jax.random.key(0), b, train=False),
        train.example_batch(run_config))
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                          variables['params'])
    # 2-way output (absent, present): logit = bias_present - bias_absent.
    params['output']['bias'] = np.array([0.0, bias[view]], np.float32)
    directory = runs.run_dir(config, workdir, key)
    checkpointing.save_weights_only(directory, {'params': params}, 1, {}, 1)
    tables.write_results(
        {'aus': [12], 'per_au': {'12': {'threshold': 0.1 * view}},
         'median_window': 2 * view + 1, 'num_frames': 0}, directory,
        'test_results', markdown='')
  data = aunets_method.all_views_data(config, input_pipeline.open_dataset(config),
                                1)
  count = input_pipeline.num_frames(data, 'test')
  routed = np.where(np.arange(count) % 3 == 0, 2, 1)
  out = aunets_method.route(routed, (12,), aunets_method.checkpoint_scorer(
      config, workdir, 1, data))
  expected = 1 / (1 + np.exp(-np.vectorize(bias.get)(routed)))
  np.testing.assert_allclose(out['probabilities'][:, 0], expected, rtol=1e-5)
  np.testing.assert_allclose(out['thresholds'][:, 0], 0.1 * routed)
  np.testing.assert_array_equal(out['windows'][:, 0], 2 * routed + 1)
  labels = [r['au_occurrence'][list(data.label_indices)] for r in
            input_pipeline.split_source(data, 'test')]
  np.testing.assert_array_equal(out['labels'], np.array(labels))
  with pytest.raises(FileNotFoundError, match=r'configs/aunets.py:view'):
    aunets_method.evaluate_fold(config, workdir, 1)  # No view classifier yet.
  # The whole fold: a view classifier that puts every frame in view 2.
  view_config = aunets_config.get_config('view')
  for field, value in dict(dataset_config='tiny', data_dir=tiny_data_dir,
                           resize_size=40, crop_size=32,
                           eval_batch_size=8).items():
    view_config[field] = value
  view_config.model.width_multiplier = 1 / 16
  view_dir = aunets_method.view_classifier_dir(config, workdir, 1)
  variables = jax.eval_shape(
      lambda b: models.create(view_config).init(jax.random.key(0), b,
                                                train=False),
      train.example_batch(view_config))
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        variables['params'])
  params['output']['bias'] = np.eye(9, dtype=np.float32)[1] * 5  # View 2.
  checkpointing.save_weights_only(view_dir, {'params': params}, 1, {}, 1)
  checkpointing.write_config(view_config, view_dir)
  results = aunets_method.evaluate_fold(config, workdir, 1)
  assert set(results['routed_view'].tolist()) == {2}
  np.testing.assert_allclose(results['probabilities_routed'][:, 0],
                             1 / (1 + np.exp(-2.0)), rtol=1e-5)
  assert list(results['per_view']) == ['0']  # tiny is single-view.
  assert results['per_view']['0']['routed_to_own_view'] == 0.0
  assert np.isnan(results['view_classifier']['frame_accuracy'])
  stored = checkpointing.read_test_results(
      runs.run_dir(config, workdir, runs.RunKey(1)))
  np.testing.assert_array_equal(stored['routed_view'], results['routed_view'])


def _per_view_config(views=(5, 4, 6), adapt_views_from=5):
  config = aunets_config.get_config('test')
  config.aus = (12,)
  config.one_model_per = ('view', 'au')
  config.views = views
  config.adapt_views_from = adapt_views_from
  return config


def test_other_views_start_from_the_adapt_view(tmp_path):
  """The paper's chain: views 4 and 6 load view 5's finished run of the same
  fold and AU; view 5 keeps config.init_from (EmoNet)."""
  config = _per_view_config()
  assert [k.view for k in runs.plan(config)] == [5, 4, 6]
  frontal = runs.run_config(config, runs.RunKey(1, 5, 12))
  assert frontal.init_from.classify_field == 'emotion'
  workdir = str(tmp_path)
  variables = jax.eval_shape(
      lambda b: models.create(frontal).init(jax.random.key(0), b,
                                            train=False),
      train.example_batch(frontal))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(
      s.dtype), variables['params'])
  checkpointing.save_weights_only(
      runs.run_dir(config, workdir, runs.RunKey(1, 5, 12)),
      {'params': params}, 7, {}, 1)
  for view in (4, 6):
    adapted = runs.run_config(config, runs.RunKey(1, view, 12))
    assert adapted.init_from.view == 5
    assert init_from.source_run_dir(adapted, workdir) == runs.run_dir(
        config, workdir, runs.RunKey(1, 5, 12))
    fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                         variables['params'])
    loaded, report = init_from.load_init_from(adapted, workdir,
                                         {'params': fresh})
    assert report['step'] == 7 and not report['not_in_source']
    jax.tree.map(np.testing.assert_array_equal, loaded['params'], params)
  # Without the chain every view starts from config.init_from.
  config.adapt_views_from = -1
  assert runs.run_config(config, runs.RunKey(1, 4, 12)).init_from.view is None


def test_adapt_view_must_train_first():
  with pytest.raises(ValueError, match=r'adapt_views_from=5.*first'):
    runs.plan(_per_view_config(views=(4, 5, 6)))
  with pytest.raises(ValueError, match=r'adapt_views_from=5'):
    runs.plan(_per_view_config(views=(4, 6)))
