"""Per-AU evaluation of a split, cross-fold aggregation and result tables.

The protocol is ../shared/reference/protocols.md: frame-level F1 per AU at a
0.5 threshold (per-AU thresholds only when a config asks, tuned on validation
data only), accuracy and ROC AUC per AU, the unweighted mean over AUs, and
across folds the mean of the folds' per-AU numbers. Unknown labels (-1) and
padding rows (`mask` False) are left out of every number.

A results dict (from `evaluate` or `compute_metrics`):
  'aus': [C] FACS ids;  'num_frames': frames counted;
  'per_au': {str(au): {'f1', 'accuracy', 'auc', 'average_precision',
             'baseline_f1' (percent), 'positive_rate' (fraction of the known
             labels that are positive), 'num_labelled', 'threshold'}}, keyed
             by the FACS id as a string (as in the JSON file);
  'mean': the same five metrics averaged over AUs (nan AUs skipped, see
          `_mean`);
  'labels' [N, C], 'probabilities' [N, C] and, when batches carry them,
  'subject', 'sequence', 'view', 'frame_index' [N]: every test frame's
  identity, kept with the raw arrays for threshold tuning, per-video
  smoothing and per-person analysis (written to an .npz, not the JSON).
'baseline_f1' is the F1 of predicting every frame positive, 2 r / (1 + r) for
a positive rate r: the floor a detector's F1 is read against.
`per_au_values(results, 'f1')` gives one metric as a [C] array.
"""

from typing import Any, Callable, Iterable, Mapping, Sequence
import warnings

import numpy as np

from au_jax import aus as aus_lib
from au_jax import metrics
from au_jax.data import transforms
from au_jax.tables import per_au_values

PERCENT_METRICS = ('f1', 'accuracy', 'auc', 'average_precision',
                   'baseline_f1')
RAW_KEYS = ('labels', 'probabilities', 'subject', 'sequence', 'view',
            'frame_index')
_OPTIONAL_RAW = ('subject', 'sequence', 'view', 'frame_index')


def _mean(values: np.ndarray) -> float:
  """Unweighted mean over AUs, skipping nan AUs (e.g. AUC of a one-class AU).

  F1 is never nan (0 by convention), so the mean F1 is over all AUs.
  """
  values = np.asarray(values, np.float64)
  if np.isnan(values).all():
    return float('nan')
  return float(np.nanmean(values))


def _per_au_dict(aus: Sequence[int],
                 columns: Mapping[str, Sequence[float]]) -> dict[str, Any]:
  """{metric: [C]} -> {str(au): {metric: value}} with Python scalars."""
  return {str(au): {key: (int(values[c]) if key == 'num_labelled'
                          else float(values[c]))
                    for key, values in columns.items()}
          for c, au in enumerate(aus)}


def _as_thresholds(threshold, num_aus: int) -> np.ndarray:
  thresholds = np.asarray(threshold, np.float64)
  if thresholds.ndim > 1 or thresholds.size not in (1, num_aus):
    raise ValueError(f'threshold must be a number or {num_aus} per-AU '
                     f'values; got shape {thresholds.shape}.')
  thresholds = np.broadcast_to(thresholds, (num_aus,))
  if np.any((thresholds < 0) | (thresholds > 1)):
    raise ValueError(f'thresholds must lie in [0, 1]; got {thresholds}.')
  return thresholds.copy()


def compute_metrics(labels, probabilities, aus: Sequence[int],
                    threshold: float | Sequence[float] = 0.5,
                    mask=None) -> dict[str, Any]:
  """The results dict (module docstring) from arrays.

  Args:
    labels: [N, C] int in {1, 0, -1}.
    probabilities: [N, C] float in [0, 1].
    aus: the C FACS ids, in column order.
    threshold: a frame is positive when probability >= threshold; a float or
      per-AU [C].
    mask: optional [N] bool, False = leave the row out.

  Returns:
    The results dict, including the (masked) raw 'labels'/'probabilities'.
  """
  aus = aus_lib.check_aus(aus, where='aus')
  labels = np.asarray(labels)
  probabilities = np.asarray(probabilities, np.float64)
  if labels.ndim != 2 or labels.shape[1] != len(aus):
    raise ValueError(f'labels have shape {labels.shape}; expected [N, '
                     f'{len(aus)}] for AUs {aus}.')
  if probabilities.shape != labels.shape:
    raise ValueError(f'probabilities {probabilities.shape} and labels '
                     f'{labels.shape} differ in shape.')
  if mask is not None:
    mask = np.asarray(mask, bool)
    labels, probabilities = labels[mask], probabilities[mask]
  if not np.isfinite(probabilities).all():
    bad = np.argwhere(~np.isfinite(probabilities))
    raise ValueError(f'{len(bad)} probabilities are nan/inf (first at frame, '
                     f'AU column {tuple(bad[0].tolist())}): has training '
                     'diverged?')
  thresholds = _as_thresholds(threshold, len(aus))
  predictions = probabilities >= thresholds
  counts = metrics.confusion_counts(labels, predictions)
  num_labelled = sum(counts.values())
  positives = counts['tp'] + counts['fn']
  positive_rate = np.where(num_labelled > 0,
                           positives / np.maximum(num_labelled, 1), np.nan)
  with np.errstate(invalid='ignore'):
    baseline = 2 * positive_rate / (1 + positive_rate)
  # No known label -> all-positive F1 is 0 like any F1 (metrics.py rule).
  baseline = np.nan_to_num(baseline, nan=0.0)
  per_au = {
      'f1': 100 * metrics.f1_from_counts(counts['tp'], counts['fp'],
                                         counts['fn']),
      'accuracy': 100 * metrics.accuracy_from_counts(**counts),
      'auc': 100 * metrics.auc(labels, probabilities),
      'average_precision': 100 * metrics.average_precision(labels,
                                                           probabilities),
      'baseline_f1': 100 * baseline,
  }
  results = {
      'aus': list(aus),
      'num_frames': int(labels.shape[0]),
      'per_au': _per_au_dict(aus, {**per_au,
                                   'positive_rate': positive_rate,
                                   'num_labelled': num_labelled,
                                   'threshold': thresholds}),
      'mean': {k: _mean(per_au[k]) for k in PERCENT_METRICS},
      'labels': labels,
      'probabilities': probabilities.astype(np.float32),
  }
  return results


def _text(values: np.ndarray) -> np.ndarray:
  if values.dtype.kind in 'OS':
    return np.array([v.decode('utf-8') if isinstance(v, bytes) else str(v)
                     for v in values])
  return values


def evaluate(predict_fn: Callable[[Mapping[str, np.ndarray]], np.ndarray],
             batches: Iterable[Mapping[str, np.ndarray]], aus: Sequence[int],
             threshold: float = 0.5,
             thresholds: Sequence[float] | None = None) -> dict[str, Any]:
  """Runs `predict_fn` over `batches` and scores every real frame once.

  Args:
    predict_fn: batch -> probabilities np [B, C].
    batches: numpy dict batches with 'au_occurrence' [B, C] int (1/0/-1) in
      `aus` order and 'mask' [B] bool (False on padding rows); optional
      'subject', 'sequence', 'frame_index' [B] are kept with the raw arrays.
    aus: the C FACS ids.
    threshold: the decision threshold for every AU...
    thresholds: ...or per-AU thresholds [C] (e.g. from `tune_thresholds`),
      which take precedence.

  Returns:
    The results dict (module docstring).
  """
  collected = {key: [] for key in RAW_KEYS}
  for index, batch in enumerate(batches):
    labels = np.asarray(batch['au_occurrence'])
    mask = np.asarray(batch.get('mask', np.ones(labels.shape[0], bool)),
                      bool)
    probabilities = np.asarray(predict_fn(batch), np.float32)
    if probabilities.shape != labels.shape:
      raise ValueError(
          f'batch {index}: predict_fn returned {probabilities.shape}, labels '
          f'are {labels.shape}.')
    collected['labels'].append(labels[mask])
    collected['probabilities'].append(probabilities[mask])
    for key in _OPTIONAL_RAW:
      if f'{key}_code' in batch:  # Text ids carried as uint8 codes.
        collected[key].append(transforms.decode_text_ids(
            np.asarray(batch[f'{key}_code'])[mask]))
      elif key in batch:
        collected[key].append(_text(np.asarray(batch[key])[mask]))
  if not collected['labels']:
    raise ValueError('evaluate: `batches` yielded no batch.')
  labels = np.concatenate(collected['labels'])
  probabilities = np.concatenate(collected['probabilities'])
  results = compute_metrics(
      labels, probabilities, aus,
      threshold if thresholds is None else thresholds)
  for key in _OPTIONAL_RAW:
    parts = collected[key]
    # Only when every batch had the key, so rows stay aligned.
    if parts and len(parts) == len(collected['labels']):
      results[key] = np.concatenate(parts)
  return results


def cross_fold(results_by_fold: Mapping[int, Mapping[str, Any]],
               aus: Sequence[int]) -> dict[str, Any]:
  """Mean of the folds' per-AU metrics (protocols.md, "Cross-fold result").

  Args:
    results_by_fold: fold number -> results dict of that fold's test split.
    aus: the C FACS ids (every fold must have them, in this order).

  Returns:
    A results dict whose 'per_au' holds the mean over folds of each per-AU
    metric (nan folds skipped for AUC/AP), 'mean' the mean over AUs of those,
    'num_frames' the total, 'std_mean_f1' the standard deviation of the folds'
    mean F1, and 'folds' {fold: {'per_au', 'mean', 'num_frames', ...}} with
    each fold's own numbers (raw arrays dropped).
  """
  aus = aus_lib.check_aus(aus, where='aus')
  if not results_by_fold:
    raise ValueError('cross_fold: no fold results given.')
  folds = {}
  for fold, result in sorted(results_by_fold.items()):
    if tuple(result['aus']) != aus:
      raise ValueError(f'fold {fold} was evaluated on AUs {result["aus"]}, '
                       f'expected {aus}.')
    # Fold numbers, or 'all' (cross-dataset: one run on every subject).
    key = fold if str(fold) == 'all' else int(fold)
    folds[key] = {k: v for k, v in result.items() if k not in RAW_KEYS}
  per_au = {}
  extra = [key for key in ('f1_at_05', 'f1_smoothed')
           if all(key in f['per_au'][str(aus[0])] for f in folds.values())]
  for key in PERCENT_METRICS + ('positive_rate',) + tuple(extra):
    stacked = np.array([per_au_values(f, key) for f in folds.values()])
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)  # all-nan AU -> nan
      per_au[key] = np.nanmean(stacked, axis=0)
  per_au['num_labelled'] = np.sum([per_au_values(f, 'num_labelled')
                                   for f in folds.values()], axis=0)
  fold_f1 = [f['mean']['f1'] for f in folds.values()]
  return {
      'aus': list(aus),
      'num_frames': int(sum(f['num_frames'] for f in folds.values())),
      'per_au': _per_au_dict(aus, per_au),
      'mean': {k: _mean(per_au[k]) for k in PERCENT_METRICS + tuple(extra)},
      'std_mean_f1': float(np.std(fold_f1)),
      'folds': folds,
  }




def cross_dataset_aus(aus: Sequence[int], test_dataset: str) -> tuple[int, ...]:
  """The AUs of `aus` (a model's outputs, in its order) that `test_dataset`
  labels: what a cross-dataset test scores (e.g. BP4D's 12 AUs tested on
  UNBC-McMaster -> (4, 6, 7, 10, 12)). Raises naming both AU sets when they
  share none."""
  aus = aus_lib.check_aus(aus, where='config.aus')
  available = aus_lib.dataset_aus(test_dataset)
  shared = tuple(a for a in aus if a in available)
  if not shared:
    raise ValueError(
        f'Cross-dataset test: the model detects AUs {aus} and '
        f'{test_dataset} labels AUs {tuple(available)}; they share no AU, so '
        'there is nothing to score. Pick a test_dataset that labels some of '
        'config.aus, or train on AUs it labels.')
  return shared


def select_columns(predict_fn: Callable[[Mapping[str, np.ndarray]], Any],
                   columns: Sequence[int]
                   ) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
  """`predict_fn` keeping only output `columns` (the shared AUs of a
  cross-dataset test); a (scores, features) result keeps its features."""
  columns = np.asarray(columns, np.int64)

  def predict(batch):
    out = predict_fn(batch)
    if isinstance(out, tuple):
      return (np.asarray(out[0])[:, columns],) + tuple(out[1:])
    return np.asarray(out)[:, columns]
  return predict
