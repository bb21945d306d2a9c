"""AUNets training: one binary (2-way softmax) VGG-16 per AU.

Paper: ../shared/papers/aunets_2017.txt sec. 3.2 ("a binary output softmax
layer predicting the presence or absence of the AU"), 3.2.2 and 4.1; solver
facts in ../shared/reference/architectures.md (Adam 1e-4, betas (0.5,
0.999), linear decay, early stop on validation F1: configs/aunets.py).

Each run trains one AU (config.one_model_per=('au',), config.aus = that
AU), so the loss is that AU's 2-way softmax cross-entropy averaged over the
frames with a known label (-1 and evaluation padding masked). The model
returns logit = z_present - z_absent, and
  -log softmax(z)[y] = -log sigmoid(+-(z_present - z_absent)),
so the loss is computed by the HydraNet loss of au_jax/methods/caud.py
(per-AU known-label mean, summed over the device axis); a run with several
AUs sums their means, i.e. it trains each output as if alone.
"""


import copy
import grain
import jax
import json
import ml_collections
import numpy as np
import os
from typing import Any, Callable

from au_jax import checkpointing
from au_jax.data import device_transforms
from au_jax import evaluate
from au_jax.data import input_pipeline
from au_jax import methods
from au_jax import models
from au_jax import parallel
from au_jax import postprocess
from au_jax import runs
from au_jax import tables
from au_jax.data import transforms
from au_jax.methods import caud
from au_jax import fold_evaluation


def loss_fn(outputs: tuple[jax.Array, dict[str, Any]],
            batch: dict[str, jax.Array],
            config: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
  """outputs: (logits [B, C] (C = 1 per AU model), aux); batch
  ['au_occurrence'] [B, C] in {1, 0, -1}. Returns (loss, scalars) as
  au_jax.methods.caud.loss_fn."""
  return caud.loss_fn(outputs, batch, config)


def evaluate_fold(config, workdir: str, fold,
                  results_by_key: dict[Any, Any] | None = None
                  ) -> dict[str, Any]:
  """The fold's test results: the per-AU models stacked
  (fold_evaluation.combine_runs), or with one_model_per=('view', 'au') the
  multi-view cascade (au_jax/methods/aunets.py: view classifier, routing)."""
  if 'view' in tuple(config.get('one_model_per') or ()):
    return evaluate_cascade(config, workdir, fold, results_by_key)
  return fold_evaluation.combine_runs(config, workdir, fold, results_by_key)


# score(view, au, rows) -> (probabilities [R], labels [R], threshold, window)
Scorer = Callable[[int, int, np.ndarray],
                  tuple[np.ndarray, np.ndarray, float, int]]


def video_views(probabilities: np.ndarray, videos: np.ndarray,
                rule: str = 'sum') -> np.ndarray:
  """[N] predicted view class (0-based) of each frame's video.

  Args:
    probabilities: [N, K] per-frame view probabilities.
    videos: [N] video id of each frame (postprocess.video_ids).
    rule: 'sum' (argmax of the summed probabilities) or 'max' (argmax of
      each view's largest frame probability).
  """
  probabilities = np.asarray(probabilities, np.float64)
  videos = np.asarray(videos)
  if rule not in ('sum', 'max'):
    raise ValueError(f"view rule {rule!r}: use 'sum' or 'max'.")
  if probabilities.ndim != 2 or videos.shape != probabilities.shape[:1]:
    raise ValueError(f'probabilities {probabilities.shape} must be [N, K] and '
                     f'videos {videos.shape} [N].')
  result = np.zeros(len(videos), np.int64)
  for video in np.unique(videos):
    rows = videos == video
    pooled = (probabilities[rows].sum(0) if rule == 'sum'
              else probabilities[rows].max(0))
    result[rows] = int(np.argmax(pooled))
  return result


def view_accuracy(true_class: np.ndarray, probabilities: np.ndarray,
                  videos: np.ndarray, rule: str = 'sum') -> dict[str, Any]:
  """The view classifier's per-frame and per-video accuracy (percent; paper
  table 6), frames with an unknown view (< 0) left out."""
  true_class = np.asarray(true_class)
  known = true_class >= 0
  frame = np.argmax(probabilities, -1)
  routed = video_views(probabilities, videos, rule)
  per_video = {}
  for video in np.unique(np.asarray(videos)[known]):
    rows = known & (np.asarray(videos) == video)
    per_video[video] = bool(routed[rows][0] == true_class[rows][0])
  if not known.any():  # Single-view data: no view labels to score.
    return {'frame_accuracy': float('nan'), 'video_accuracy': float('nan'),
            'num_frames': 0, 'num_videos': 0, 'rule': rule}
  return {
      'frame_accuracy': float(100 * np.mean(frame[known] == true_class[known])),
      'video_accuracy': float(100 * np.mean(list(per_video.values()))),
      'num_frames': int(known.sum()), 'num_videos': len(per_video),
      'rule': rule}


def route(routed_view: np.ndarray, aus, score: Scorer
          ) -> dict[str, np.ndarray]:
  """Scores every frame with the ensemble of its routed view.

  Args:
    routed_view: [N] view id (as in the records and run directories) each
      frame's video was routed to.
    aus: the C AUs (columns).
    score: `Scorer`; called once per (view, AU) with the frame rows routed
      to that view, in increasing order.

  Returns:
    'probabilities' [N, C], 'labels' [N, C], 'predictions' [N, C] int8 (at
    each routed run's threshold), 'thresholds' and 'windows' [N, C] (the
    rule each frame was scored under).
  """
  routed_view = np.asarray(routed_view)
  count, width = len(routed_view), len(aus)
  out = {'probabilities': np.zeros((count, width)),
         'labels': np.full((count, width), -1, np.int32),
         'thresholds': np.zeros((count, width)),
         'windows': np.ones((count, width), np.int64)}
  for view in np.unique(routed_view):
    rows = np.flatnonzero(routed_view == view)
    for column, au in enumerate(aus):
      probabilities, labels, threshold, window = score(int(view), int(au),
                                                       rows)
      out['probabilities'][rows, column] = probabilities
      out['labels'][rows, column] = labels
      out['thresholds'][rows, column] = threshold
      out['windows'][rows, column] = window
  out['predictions'] = (out['probabilities'] >= out['thresholds']).astype(
      np.int8)
  return out


def smooth_routed(predictions: np.ndarray, windows: np.ndarray,
                  videos: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
  """Median smoothing of each video's column with the window of the run
  that scored it (never across videos: postprocess.median_smooth)."""
  result = np.asarray(predictions).copy()
  for window in np.unique(windows):
    if window <= 1:
      continue
    smoothed = postprocess.median_smooth(predictions, videos, int(window),
                                         frame_index)
    result = np.where(windows == window, smoothed, result)
  return result


# ----------------------------------------------------------------------------
# Real runs.

def _batches(config, data, split, rows):
  """Eval batches (padded, `mask`) of the records `rows` of `split`."""
  source = input_pipeline._Subset(  # pylint: disable=protected-access
      input_pipeline.split_source(data, split), np.asarray(rows))
  dataset = grain.MapDataset.source(source).map(transforms.KeepTextIds())
  for transform in input_pipeline._record_transforms(  # pylint: disable=protected-access
      config, data, train=False):
    dataset = dataset.map(transform)
  dataset = dataset.batch(config.eval_batch_size, drop_remainder=False)
  for batch in dataset:
    batch = {k: v for k, v in batch.items()
             if np.asarray(v).dtype.kind in 'biuf'}
    yield parallel.pad_batch(batch, config.eval_batch_size)


_FORWARD = {}  # Jitted forward passes by model config: one compile per
# architecture, not per (view, AU) run.


def _forward(config, predict):
  key = json.dumps([config.model_name, config.model.to_dict(),
                    config.resize_size, config.crop_size,
                    list(config.pixel_mean), list(config.pixel_std),
                    config.get('pixel_range', 1.0), config.get('dtype'),
                    len(config.aus), predict.__module__, predict.__name__],
                   sort_keys=True, default=str)
  if key not in _FORWARD:
    model = models.create(config)

    @jax.jit
    def forward(variables, batch):
      batch = device_transforms.eval_preprocess(batch, config)
      logits, aux = model.apply(variables, batch, train=False)
      return predict(logits, aux)
    _FORWARD[key] = forward
  return _FORWARD[key]


def _predict_rows(config, variables, data, split, rows, predict):
  """(scores [R, K], labels [R, C of data], views [R]) of `rows` of
  `split` under `config`'s model and `variables`."""
  forward = _forward(config, predict)
  scores, labels, views = [], [], []
  for batch in _batches(config, data, split, rows):
    mask = np.asarray(batch.pop('mask'), bool)
    inputs = {k: v for k, v in batch.items()
              if k not in ('subject_code', 'sequence_code')}
    scores.append(np.asarray(forward(variables, inputs))[mask])
    labels.append(np.asarray(batch['au_occurrence'])[mask])
    views.append(np.asarray(batch['view'])[mask])
  return (np.concatenate(scores), np.concatenate(labels),
          np.concatenate(views))


def _variables(directory: str) -> dict[str, Any]:
  raw, _ = checkpointing.restore_raw(directory)
  return {'params': raw['params'], 'batch_stats': raw.get('batch_stats') or {}}


def checkpoint_scorer(config: ml_collections.ConfigDict, workdir: str,
                      fold, data: input_pipeline.FoldData,
                      split: str = 'test') -> Scorer:
  """Scores rows of `split` of `data` (all_views_data) with run (fold,
  view, AU): its best checkpoint, its test_results' threshold and median
  window (fitted on validation), else config.threshold and window 1."""
  def score(view, au, rows):
    key = runs.RunKey(fold, view, au)
    run_config = runs.run_config(config, key)
    directory = runs.run_dir(config, workdir, key)
    probabilities, labels, _ = _predict_rows(
        run_config, _variables(directory), data, split, rows,
        methods.default_predict)
    threshold, window = float(config.threshold), 1
    path = os.path.join(directory, 'test_results.json')
    if os.path.exists(path):
      with open(path) as f:
        stored = json.load(f)
      threshold = float(stored['per_au'][str(au)]['threshold'])
      window = int(stored.get('median_window') or 1)
    column = list(data_aus).index(au)
    return probabilities[:, 0], labels[:, column], threshold, window
  data_aus = tuple(config.aus)  # data's label columns.
  return score


def all_views_data(config: ml_collections.ConfigDict, builder: Any,
                   fold) -> input_pipeline.FoldData:
  """The fold's data with every view's frames (the ensembles' configs list
  their own views; a routed video may be of any view)."""
  plain = copy.deepcopy(config)
  with plain.unlocked():
    plain.views = ()
  return input_pipeline.fold_data(plain, builder, fold)


def view_classifier_dir(config: ml_collections.ConfigDict, workdir: str,
                        fold) -> str:
  """The run of `config.view_classifier` (a `classify` on 'view' run of the
  same dataset and fold)."""
  source = copy.deepcopy(config)
  with source.unlocked():
    source.method = 'classify'
    source.classify_field = 'view'
  return runs.run_dir(source, workdir, runs.RunKey(fold))


def evaluate_cascade(config: ml_collections.ConfigDict, workdir: str, fold,
                  results_by_key: dict[Any, Any] | None = None
                  ) -> dict[str, Any]:
  """The cascade's test results of `fold`: view classifier, routing, the
  routed ensembles; per-view (true view) and overall F1, smoothed F1 and
  accuracy, and the view classifier's frame and video accuracy. Written to
  `<method>/fold_k/test_results.{json,md}`."""
  del results_by_key  # Every run is read back from its directory.
  builder = input_pipeline.open_dataset(config)
  data = all_views_data(config, builder, fold)
  view_dir = view_classifier_dir(config, workdir, fold)
  if not os.path.exists(os.path.join(view_dir, 'config.json')):
    raise FileNotFoundError(
        f'The cascade routes test videos with the view classifier run '
        f'{view_dir}, which does not exist. Train it first:\n  python -m '
        f'au_jax.main --config=configs/aunets.py:view --workdir={workdir} '
        f'--config.folds={fold} --config.dataset_config='
        f'{config.dataset_config}')
  view_config = checkpointing.read_config(view_dir)
  view_data = input_pipeline.fold_data(view_config, builder, fold)
  count = input_pipeline.num_frames(data, 'test')
  ids = input_pipeline._record_ids(  # pylint: disable=protected-access
      builder, tuple(data.subjects.test))
  videos = postprocess.video_ids(ids['subject'], ids['sequence'],
                                 ids['view'])
  probabilities, _, true_view = _predict_rows(
      view_config, _variables(view_dir), view_data, 'test', np.arange(count),
      methods.get(view_config).predict)
  rule = config.get('view_rule') or 'sum'
  routed = video_views(probabilities, videos, rule) + 1  # Views are 1-based.
  views = tuple(int(v) for v in config.views)
  unknown = sorted(set(routed.tolist()) - set(views))
  if unknown:  # A view with no ensemble: route to the frontal (first) one.
    routed = np.where(np.isin(routed, views), routed, views[0])
  scored = route(routed, config.aus, checkpoint_scorer(
      config, workdir, fold, data))
  predictions = scored['predictions']
  smoothed = smooth_routed(predictions, scored['windows'], videos,
                           ids['frame_index'])
  labels = scored['labels']
  results = evaluate.compute_metrics(labels, predictions.astype(np.float64),
                                     config.aus, 0.5)
  results['probabilities_routed'] = scored['probabilities']
  smooth = evaluate.compute_metrics(labels, smoothed.astype(np.float64),
                                    config.aus, 0.5)
  results['mean']['f1_smoothed'] = smooth['mean']['f1']
  for au in config.aus:
    results['per_au'][str(au)]['f1_smoothed'] = smooth['per_au'][str(au)]['f1']
  results['per_view'] = {}
  for view in np.unique(true_view):
    rows = true_view == view
    cell = evaluate.compute_metrics(labels[rows], predictions[rows].astype(
        np.float64), config.aus, 0.5)
    cell_smooth = evaluate.compute_metrics(
        labels[rows], smoothed[rows].astype(np.float64), config.aus, 0.5)
    results['per_view'][str(int(view))] = {
        'f1': cell['mean']['f1'], 'accuracy': cell['mean']['accuracy'],
        'f1_smoothed': cell_smooth['mean']['f1'],
        'frames': int(rows.sum()),
        'routed_to_own_view': float(100 * np.mean(routed[rows] == view))}
  results['view_classifier'] = view_accuracy(true_view - 1, probabilities,
                                             videos, rule)
  results['view_classifier']['run'] = view_dir
  results['routed_view'] = routed
  results['view'] = true_view
  results['subject'], results['sequence'] = ids['subject'], ids['sequence']
  results['frame_index'] = ids['frame_index']
  results['fold'] = fold
  tables.write_results(results, runs.run_dir(config, workdir,
                                             runs.RunKey(fold)),
                       'test_results')
  return results
