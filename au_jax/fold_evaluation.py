"""Evaluating runs and folds: validation during training, the test protocol
after it, per-AU models stacked into a fold, and the cross-fold summary.

The decision rule is fitted on validation frames only, then applied to the
test frames unchanged (protocols.md):
  * thresholds: 0.5, or with `config.tune_thresholds` per-AU thresholds
    tuned on the full validation split (postprocess.tune_thresholds,
    regularised by `config.min_positives_for_threshold`);
  * smoothing: `config.median_window` = 1/None (off), a window, or 'tune'
    (chosen on validation from AUNets' {3, 5, 7, 9, 10, 11},
    postprocess.MEDIAN_WINDOWS), applied per video
    (subject, sequence, view);
  * the best checkpoint: `config.best_metric` = 'f1' (validation mean F1
    under the same rule as at test) or 'auc'; classification runs use
    accuracy.
Test results keep every frame's subject, sequence, view and frame index, and
report F1 at 0.5 beside F1 at the tuned thresholds (and smoothed F1).

Cross-dataset (`config.test_dataset`, fold 'all'): the rule is fitted on the
training dataset's validation subjects as above; the test split is every
subject of the test dataset, scored on the AUs both datasets label
(`evaluate.cross_dataset_aus`; the model's other outputs and thresholds are
dropped), written under `runs.test_dir`.
"""

import functools
import json
import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from au_jax import aus as aus_lib
from au_jax import distributed
from au_jax import evaluate
from au_jax.data import device_transforms
from au_jax.data import folds as folds_lib
from au_jax.data import input_pipeline
from au_jax import methods
from au_jax import parallel
from au_jax import postprocess
from au_jax import prepare
from au_jax import runs
from au_jax import tables
from au_jax import visualize

_ID_CODES = ('subject_code', 'sequence_code')


def write_json(path: str, value: Any) -> None:
  text = json.dumps(tables._json_ready(value), indent=1)  # pylint: disable=protected-access
  tables.write_atomic(path, lambda f: f.write(text + '\n'))


# Multi-process evaluation: the scores (and features) each process computed
# for its rows travel with the gathered rows; images stay where they were.
_SCORES, _FEATURES = '_scores', '_features'
_NOT_GATHERED = ('image', 'flow', 'landmarks')


def _model_inputs(batch):
  return {k: v for k, v in batch.items() if k not in _ID_CODES}


def cross_dataset_test(config: ml_collections.ConfigDict
                       ) -> tuple[input_pipeline.FoldData, tuple[int, ...],
                                  np.ndarray]:
  """The test data of a cross-dataset config: (every subject of
  config.test_dataset with labels of the shared AUs, the shared AUs, their
  columns in the model's outputs)."""
  shared = runs.check_cross_dataset(config)
  builder = prepare.ensure_built(
      config.test_dataset, config.get('test_dataset_config'),
      config.get('data_dir'), None)
  subjects = folds_lib.test_subjects(
      config.test_dataset, input_pipeline.available_subjects(builder),
      strict=config.get('strict_folds', True))
  columns = np.array([list(config.aus).index(a) for a in shared], np.int64)
  data = input_pipeline.FoldData(
      builder, subjects, aus_lib.label_indices(config.test_dataset, shared))
  return data, shared, columns


def eval_step(state: Any, batch: dict[str, jnp.ndarray],
              predict: Any = methods.default_predict,
              with_features: bool = False,
              config: ml_collections.ConfigDict | None = None) -> Any:
  """Scores [B, K] (per-AU probabilities by default) with running batch-norm
  statistics; with `with_features`, (scores, aux['features']). A uint8
  batch is centre-cropped and normalised here first (needs `config`)."""
  if batch['image'].dtype == jnp.uint8:
    batch = device_transforms.eval_preprocess(batch, config)
  logits, aux = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats}, batch,
      train=False)
  scores = predict(logits, aux)
  if with_features:
    return scores, aux['features'].astype(jnp.float32)
  return scores


class Evaluator:
  """Validation numbers while a run trains and its test results after."""

  def __init__(self, config: ml_collections.ConfigDict,
               data: input_pipeline.FoldData, method: Any):
    self.config, self.data, self.method = config, data, method
    # What 'test' reads and scores (another dataset in cross-dataset runs).
    self.test_data, self.test_aus, self.test_columns = (
        data, tuple(config.aus), None)
    if config.get('test_dataset'):
      self.test_data, self.test_aus, self.test_columns = (
          cross_dataset_test(config))
    predict = getattr(method, 'predict', methods.default_predict)
    self.p_eval = parallel.pmap_step(
        functools.partial(eval_step, predict=predict, config=config),
        donate_state=False)
    self.p_features = parallel.pmap_step(
        functools.partial(eval_step, predict=predict,
                          with_features=True, config=config),
        donate_state=False)

  def _predict_fn(self, p_state, features=False):
    step = self.p_features if features else self.p_eval
    def predict(batch):
      if _SCORES in batch:  # Scored before the gather (multi-process).
        return ((batch[_SCORES], batch[_FEATURES]) if features
                else batch[_SCORES])
      return parallel.unshard(step(p_state, parallel.shard(
          _model_inputs(batch))))
    return predict

  def _batches(self, split, max_frames=None, p_state=None, features=False):
    data = self.test_data if split == 'test' else self.data
    batches = input_pipeline.eval_batches(self.config, data, split,
                                          max_frames)
    if distributed.process_count() == 1:
      return batches
    return self._gathered(batches, p_state, features)

  def _gathered(self, batches, p_state, features):
    """Multi-process: this process scores its block of the frames (as
    eval_batches gives it), then every process's rows are gathered in
    process order (= record order, padding last in each block) into one
    batch holding the scores; `mask` drops the padding, so every frame
    counts once and every process holds the same results."""
    if p_state is None:
      raise ValueError('Multi-process evaluation needs the state to score '
                       'each process\'s frames before the gather.')
    predict = self._predict_fn(p_state, features)
    parts = []
    for batch in batches:
      out = predict(batch)
      rows = {k: np.asarray(v) for k, v in batch.items()
              if k not in _NOT_GATHERED}
      if features:
        rows[_SCORES], rows[_FEATURES] = (np.asarray(x) for x in out)
      else:
        rows[_SCORES] = np.asarray(out)
      parts.append(rows)
    local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    yield distributed.allgather_rows(local)

  def split_results(self, p_state, split, max_frames=None,
                    thresholds=None) -> dict[str, Any]:
    evaluate_split = getattr(self.method, 'evaluate_split', None)
    if evaluate_split is not None:  # The method scores its own splits.
      return evaluate_split(
          self._predict_fn(p_state), self._batches(split, max_frames,
                                                   p_state), self.config)
    predict, aus = self._predict_fn(p_state), self.config.aus
    if split == 'test' and self.test_columns is not None:
      predict = evaluate.select_columns(predict, self.test_columns)
      aus = self.test_aus
      if thresholds is not None:
        thresholds = np.asarray(thresholds)[self.test_columns]
    return evaluate.evaluate(
        predict, self._batches(split, max_frames, p_state), aus,
        threshold=self.config.threshold, thresholds=thresholds)

  def _thresholds(self, results) -> np.ndarray | None:
    if not self.config.get('tune_thresholds'):
      return None
    return postprocess.tune_thresholds(
        results['labels'], results['probabilities'],
        min_positives=self.config.get('min_positives_for_threshold', 10))

  def validation_scalars(self, p_state) -> dict[str, float]:
    """Validation numbers; 'val_best' is what picks the best checkpoint."""
    results = self.split_results(p_state, 'validation',
                                 self.config.get('max_validation_frames'))
    method_scalars = getattr(self.method, 'validation_scalars', None)
    if method_scalars is not None:
      return method_scalars(results)
    thresholds = self._thresholds(results)
    if thresholds is not None:
      results = evaluate.compute_metrics(results['labels'],
                                         results['probabilities'],
                                         self.config.aus, thresholds)
    out = {'val_mean_f1': results['mean']['f1'],
           'val_mean_auc': results['mean']['auc']}
    best = self.config.get('best_metric', 'f1')
    out['val_best'] = out['val_mean_auc' if best == 'auc' else 'val_mean_f1']
    return out

  def test_results(self, p_state, directory: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The test split under the validation-fitted rule, with `extra` (run,
    checkpoint step, subjects), written to `directory/test_results.{json,md}`
    (+ `_predictions.npz`)."""
    extra = extra or {}
    directory = runs.test_dir(self.config, directory)
    if not self.test_data.subjects.test:
      # Fold 'all' with no test dataset (e.g. a pretraining run): nothing
      # to test.
      return {'no_test': True, **extra}
    method_test = getattr(self.method, 'test_results', None)
    if method_test is not None:  # The method's own test table.
      return method_test(self, p_state, directory, extra)
    has_validation = bool(self.data.subjects.validation)
    validation = (self.split_results(p_state, 'validation')
                  if has_validation else None)
    thresholds = self._thresholds(validation) if validation else None
    results = self.split_results(p_state, 'test', thresholds=thresholds)
    window, window_scores = self._median_window(validation, thresholds)
    if thresholds is not None and self.test_columns is not None:
      thresholds = np.asarray(thresholds)[self.test_columns]
    results = finish_au_results(results, self.test_aus, thresholds, window)
    results['median_window'] = window
    if window_scores:
      results['median_window_validation_f1'] = window_scores
    test_extras = getattr(self.method, 'test_extras', None)
    if test_extras is not None and validation is not None:
      results.update(test_extras(self, p_state, validation))
    results.update(extra)
    if self.test_columns is not None:
      results['test_dataset'] = runs.test_dataset_dir_name(self.config)[5:]
      results['test_subjects'] = list(self.test_data.subjects.test)
      results['trained_aus'] = list(self.config.aus)
    tables.write_results(results, directory, 'test_results')
    return results

  def _median_window(self, validation, thresholds):
    window = self.config.get('median_window') or 1
    if window != 'tune':
      return int(window), None
    if validation is None or 'sequence' not in validation:
      return 1, None
    return postprocess.tune_median_window(
        validation['labels'], validation['probabilities'],
        thresholds if thresholds is not None else self.config.threshold,
        (validation['subject'], validation['sequence'], validation['view']),
        validation['frame_index'])

  def features(self, p_state, split: str, max_frames: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F], labels [N, C]) of a split's real frames."""
    predict = self._predict_fn(p_state, features=True)
    features, labels = [], []
    for batch in self._batches(split, max_frames, p_state, features=True):
      _, feats = predict(batch)
      mask = np.asarray(batch['mask'], bool)
      features.append(np.asarray(feats)[mask])
      labels.append(np.asarray(batch['au_occurrence'])[mask])
    return np.concatenate(features), np.concatenate(labels)


def finish_au_results(results, aus, thresholds, window) -> dict[str, Any]:
  """Adds 'f1_at_05' (and 'f1_smoothed' when window > 1) to each AU."""
  labels, probabilities = results['labels'], results['probabilities']
  at_05 = evaluate.compute_metrics(labels, probabilities, aus, 0.5)
  rule = tables.per_au_values(results, 'threshold')
  extra = {}
  if thresholds is not None:
    extra['f1_at_05'] = tables.per_au_values(at_05, 'f1')
  predictions = (probabilities >= rule).astype(np.int8)
  if window > 1 and 'sequence' in results:
    smoothed = postprocess.median_smooth(
        predictions, (results['subject'], results['sequence'],
                      results.get('view')), window,
        results.get('frame_index'))
    extra['f1_smoothed'] = tables.per_au_values(
        evaluate.compute_metrics(labels, smoothed.astype(np.float64), aus,
                                 0.5), 'f1')
    results['predictions_smoothed'] = smoothed
  results['predictions'] = predictions
  for name, values in extra.items():
    for c, au in enumerate(aus):
      results['per_au'][str(au)][name] = float(values[c])
    results['mean'][name] = float(np.mean(values))
  return results


def combine_runs(config: ml_collections.ConfigDict, workdir: str, fold,
                 results_by_key: dict[runs.RunKey, dict[str, Any]]
                 ) -> dict[str, Any]:
  """A fold's test results from its runs: the last stage of each (view,
  AU) model; per-AU models' columns are stacked in `config.aus` order (all
  read the same test frames in the same order)."""
  last_stage = runs.stage_names(config)[-1]
  final = {k: v for k, v in results_by_key.items() if k.stage == last_stage}
  fold_dir = runs.run_dir(config, workdir, runs.RunKey(fold))
  if len(final) == 1:
    (key, results), = final.items()
    if runs.run_dir(config, workdir, key) != fold_dir:
      if 'aus' in results:
        tables.write_results(results, runs.test_dir(config, fold_dir),
                             'test_results')
      elif not results.get('no_test'):
        write_json(os.path.join(fold_dir, 'test_results.json'),
                   {k: v for k, v in results.items()
                    if not isinstance(v, np.ndarray)})
    results['fold'] = fold
    return results
  by_au = {key.au: results for key, results in final.items()}
  aus = tuple(runs.check_cross_dataset(config) or config.aus)
  if set(by_au) != set(aus) or len(by_au) != len(final):
    raise ValueError(f'fold {fold}: cannot stack runs {sorted(map(str, final))}'
                     ' into one per-AU table; give the method an '
                     'evaluate_fold.')
  columns = [by_au[au] for au in aus]
  labels = np.concatenate([r['labels'] for r in columns], axis=1)
  probabilities = np.concatenate([r['probabilities'] for r in columns],
                                 axis=1)
  thresholds = [r['per_au'][str(au)]['threshold']
                for r, au in zip(columns, aus)]
  stacked = evaluate.compute_metrics(labels, probabilities, aus, thresholds)
  for key in ('subject', 'sequence', 'view', 'frame_index'):
    if key in columns[0]:
      stacked[key] = columns[0][key]
  windows = {r.get('median_window', 1) for r in columns}
  stacked = finish_au_results(stacked, aus, thresholds,
                              max(windows) if len(windows) == 1 else 1)
  stacked['fold'] = fold
  tables.write_results(stacked, runs.test_dir(config, fold_dir),
                       'test_results')
  return stacked


def summarise(config: ml_collections.ConfigDict, workdir: str,
              results_by_fold: dict[Any, dict[str, Any]]) -> dict[str, Any]:
  """Writes and prints the cross-fold table under the method directory."""
  directory = runs.results_dir(config, workdir)
  first = next(iter(results_by_fold.values()))
  if first.get('no_test'):
    print(f'\n{config.method} trained on every subject of {config.dataset}/'
          f'{config.dataset_config} (fold all); no test_dataset, no test.')
    return {'no_test': True}
  if 'aus' not in first:  # Classification: mean accuracy over folds.
    table = {'accuracy': float(np.mean([r['accuracy']
                                        for r in results_by_fold.values()])),
             'folds': {str(f): {k: v for k, v in r.items()
                                if not isinstance(v, np.ndarray)}
                       for f, r in results_by_fold.items()},
             'fold_protocol': folds_lib.config_protocol(config).as_dict()}
    write_json(os.path.join(directory, 'results.json'), table)
    print(f'\n{config.method} ({config.classify_field}) on {config.dataset}/'
          f'{config.dataset_config}: accuracy {table["accuracy"]:.1f}% '
          f'(folds {list(results_by_fold)})')
    markdown = getattr(methods.get(config), 'markdown', None)
    for fold, results in results_by_fold.items():
      if markdown is not None:
        print(f'fold {fold}:\n{markdown(results)}')
    return table
  # Cross-dataset: the shared AUs (every fold result has the same).
  aus = tuple(first['aus']) if config.get('test_dataset') else config.aus
  table = evaluate.cross_fold(results_by_fold, aus)
  # Which protocol dealt the folds (each fold's subjects are in 'folds').
  table['fold_protocol'] = folds_lib.config_protocol(config).as_dict()
  json_path, md_path = tables.write_results(table, directory)
  visualize.plot_per_au_f1(table, aus,
                           os.path.join(directory, 'per_au_f1.png'))
  tested = (f' tested on {config.test_dataset}/'
            f'{config.get("test_dataset_config")} (AUs {list(aus)})'
            if config.get('test_dataset') else '')
  print(f'\n{config.method} on {config.dataset}/{config.dataset_config}, '
        f'folds {list(results_by_fold)}{tested}:')
  print(tables.markdown_table(table, aus))
  svm_f1 = [r['svm']['mean']['f1'] for r in results_by_fold.values()
            if 'svm' in r]
  if svm_f1:
    print(f'Linear SVM on fc9 (poster head): mean F1 {np.mean(svm_f1):.1f}')
  print(f'\nWritten {json_path} and {md_path}')
  return table

