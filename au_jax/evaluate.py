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
  'subject', 'sequence', 'frame_index' [N]: the raw arrays, kept for
  threshold tuning and temporal smoothing (written to an .npz, not the JSON).
'baseline_f1' is the F1 of predicting every frame positive, 2 r / (1 + r) for
a positive rate r: the floor a detector's F1 is read against.
`per_au_values(results, 'f1')` gives one metric as a [C] array.
"""

import json
import os
import tempfile
from typing import Any, Callable, Iterable, Mapping, Sequence
import warnings

import numpy as np

from au_jax import aus as aus_lib
from au_jax import metrics

PERCENT_METRICS = ('f1', 'accuracy', 'auc', 'average_precision',
                   'baseline_f1')
RAW_KEYS = ('labels', 'probabilities', 'subject', 'sequence', 'frame_index')
_OPTIONAL_RAW = ('subject', 'sequence', 'frame_index')


def _mean(values: np.ndarray) -> float:
  """Unweighted mean over AUs, skipping nan AUs (e.g. AUC of a one-class AU).

  F1 is never nan (0 by convention), so the mean F1 is over all AUs.
  """
  values = np.asarray(values, np.float64)
  if np.isnan(values).all():
    return float('nan')
  return float(np.nanmean(values))


def per_au_values(results: Mapping[str, Any], key: str) -> np.ndarray:
  """[C] float64 values of one per-AU metric, in results['aus'] order
  (None, as JSON stores nan, becomes nan)."""
  values = [results['per_au'][str(au)][key] for au in results['aus']]
  return np.array([np.nan if v is None else v for v in values], np.float64)


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
      if key in batch:
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


def tune_thresholds(labels, probabilities, mask=None) -> np.ndarray:
  """Per-AU threshold maximising F1 on the given (validation) frames.

  For each AU the candidates are its distinct known probabilities; predicting
  positive at probability >= t gives F1(t) = 2 TP(t) / (P + predicted(t)).
  The highest t reaching the maximum is returned. An AU with no positive label
  (F1 is 0 for every t) keeps 0.5.

  Args:
    labels: [N, C] int in {1, 0, -1}.
    probabilities: [N, C].
    mask: optional [N] or [N, C] bool.

  Returns:
    [C] float64 thresholds.
  """
  result = []
  for positive, score in metrics.known_columns(labels, probabilities, mask):
    num_positive = positive.sum()
    if num_positive == 0:
      result.append(0.5)
      continue
    distinct, inverse = np.unique(score, return_inverse=True)
    # Walk thresholds from the highest score down.
    frames = np.bincount(inverse, minlength=distinct.size)[::-1]
    hits = np.bincount(inverse, weights=positive,
                       minlength=distinct.size)[::-1]
    f1 = 2 * np.cumsum(hits) / (num_positive + np.cumsum(frames))
    result.append(float(distinct[::-1][np.argmax(f1)]))
  return np.asarray(result)


def median_smooth(predictions, sequence_ids, window: int) -> np.ndarray:
  """Median filter over time within each video (AUNets' post-processing).

  Frames of a sequence are assumed to be in temporal order (they need not be
  contiguous). Each sequence is padded by repeating its first and last frame
  (window // 2 times), so a window never mixes two videos and the edges are
  not pulled towards 0 as zero padding (scipy.signal.medfilt) would.

  Args:
    predictions: [N, C] binary predictions or probabilities.
    sequence_ids: [N] video id of each frame (str, bytes or int).
    window: odd window length >= 1 (AUNets: 3-11, 7 best).

  Returns:
    [N, C] smoothed values, same dtype as `predictions`.
  """
  if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
    raise ValueError(f'median window must be an odd integer >= 1; got '
                     f'{window!r}.')
  predictions = np.asarray(predictions)
  sequence_ids = np.asarray(sequence_ids)
  if predictions.ndim != 2 or sequence_ids.shape != predictions.shape[:1]:
    raise ValueError(f'predictions {predictions.shape} must be [N, C] and '
                     f'sequence_ids {sequence_ids.shape} [N].')
  result = predictions.copy()
  if window == 1:
    return result
  half = window // 2
  _, inverse = np.unique(sequence_ids, return_inverse=True)
  for group in range(inverse.max() + 1 if inverse.size else 0):
    rows = np.flatnonzero(inverse == group)
    padded = np.pad(predictions[rows], ((half, half), (0, 0)), mode='edge')
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    result[rows] = np.median(windows, axis=-1).astype(predictions.dtype)
  return result


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
    folds[int(fold)] = {k: v for k, v in result.items() if k not in RAW_KEYS}
  per_au = {}
  for key in PERCENT_METRICS + ('positive_rate',):
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
      'mean': {k: _mean(per_au[k]) for k in PERCENT_METRICS},
      'std_mean_f1': float(np.std(fold_f1)),
      'folds': folds,
  }


_COLUMNS = (('F1', 'f1'), ('Acc', 'accuracy'), ('AUC', 'auc'),
            ('All-pos F1', 'baseline_f1'))


def _rows(results: Mapping[str, Any], aus: Sequence[int]):
  """Header and rows (strings) shared by the Markdown and terminal tables."""
  aus = aus_lib.check_aus(aus, where='aus')
  if tuple(results['aus']) != aus:
    raise ValueError(f'results are for AUs {results["aus"]}, not {aus}.')
  folds = results.get('folds', {})
  header = ['AU'] + [f'F1 fold {k}' for k in folds]
  header += [name for name, _ in _COLUMNS]
  if folds:  # The metric columns are then means over the folds.
    header[len(folds) + 1] = 'F1 mean'
  fmt = lambda x: '-' if x is None or np.isnan(x) else f'{x:.1f}'
  fold_f1 = [per_au_values(f, 'f1') for f in folds.values()]
  columns = [per_au_values(results, key) for _, key in _COLUMNS]
  rows = []
  for c, au in enumerate(aus):
    rows.append([f'AU{au}'] + [fmt(f1[c]) for f1 in fold_f1]
                + [fmt(values[c]) for values in columns])
  mean = ['**mean**'] + [fmt(f['mean']['f1']) for f in folds.values()]
  mean += [fmt(results['mean'][key]) for _, key in _COLUMNS]
  rows.append(mean)
  return header, rows


def markdown_table(results: Mapping[str, Any], aus: Sequence[int]) -> str:
  """Markdown table, rows: AUs + mean; columns: per-fold F1 (cross-fold
  results only), F1, accuracy, AUC and all-positive baseline F1, in percent.
  """
  header, rows = _rows(results, aus)
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def format_table(results: Mapping[str, Any], aus: Sequence[int]) -> str:
  """The same table as plain aligned text, for the terminal."""
  header, rows = _rows(results, aus)
  rows = [[cell.strip('*') for cell in row] for row in rows]
  widths = [max(len(r[i]) for r in [header] + rows)
            for i in range(len(header))]
  line = lambda r: '  '.join(
      cell.ljust(w) if i == 0 else cell.rjust(w)
      for i, (cell, w) in enumerate(zip(r, widths)))
  text = [line(header), '-' * len(line(header))] + [line(r) for r in rows]
  text.append(f'{results["num_frames"]} frames')
  return '\n'.join(text)


def _json_ready(value: Any) -> Any:
  """numpy -> Python; nan/inf -> None (strict JSON has no NaN)."""
  if isinstance(value, Mapping):
    return {str(k): _json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(v) for v in value]
  if isinstance(value, np.ndarray):
    return _json_ready(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not np.isfinite(value):
    return None
  return value


def _write_atomic(path: str, write: Callable[[Any], None],
                  mode: str = 'w') -> None:
  """Writes through a temp file in the same folder, then os.replace: a
  reader never sees a half-written file, and a crash leaves the old one."""
  directory = os.path.dirname(os.path.abspath(path))
  handle, temp_path = tempfile.mkstemp(dir=directory, prefix='.tmp_')
  try:
    os.chmod(temp_path, 0o644)  # mkstemp makes it owner-only.
    with os.fdopen(handle, mode) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp_path, path)
  except BaseException:
    if os.path.exists(temp_path):
      os.remove(temp_path)
    raise


def write_results(results: Mapping[str, Any], directory: str,
                  name: str = 'results') -> tuple[str, str]:
  """Writes `<name>.json` and `<name>.md` (and `<name>_predictions.npz` with
  the raw arrays when present), each atomically.

  Returns:
    (json_path, md_path).
  """
  os.makedirs(directory, exist_ok=True)
  json_path = os.path.join(directory, f'{name}.json')
  md_path = os.path.join(directory, f'{name}.md')
  summary = {k: v for k, v in results.items() if k not in RAW_KEYS}
  text = json.dumps(_json_ready(summary), indent=1, allow_nan=False)
  _write_atomic(json_path, lambda f: f.write(text + '\n'))
  table = markdown_table(results, results['aus'])
  _write_atomic(md_path, lambda f: f.write(table + '\n'))
  raw = {k: np.asarray(results[k]) for k in RAW_KEYS if k in results}
  if raw:
    _write_atomic(os.path.join(directory, f'{name}_predictions.npz'),
                  lambda f: np.savez_compressed(f, **raw), mode='wb')
  return json_path, md_path
