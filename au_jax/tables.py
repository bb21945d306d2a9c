"""Result tables and files: Markdown, terminal text, JSON + npz on disk.

Every file is written atomically (temp file in the same folder, fsync, then
os.replace), so a reader or a resumed run never sees a half-written result.
"""

import json
import os
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from au_jax import aus as aus_lib
from au_jax import distributed

RAW_KEYS = ('labels', 'probabilities', 'subject', 'sequence', 'view',
            'frame_index', 'predictions', 'probabilities_smoothed',
            'predictions_smoothed')


def per_au_values(results: Mapping[str, Any], key: str) -> np.ndarray:
  """[C] float64 values of one per-AU metric, in results['aus'] order
  (None, as JSON stores nan, becomes nan)."""
  values = [results['per_au'][str(au)][key] for au in results['aus']]
  return np.array([np.nan if v is None else v for v in values], np.float64)


# AP (average precision, the CAUD thesis' second metric) beside AUC.
_COLUMNS = (('F1', 'f1'), ('Acc', 'accuracy'), ('AUC', 'auc'),
            ('AP', 'average_precision'), ('All-pos F1', 'baseline_f1'))


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
  named = list(_COLUMNS)
  first_au = results['per_au'][str(aus[0])]
  if 'f1_at_05' in first_au:  # Tuned thresholds: show F1 at 0.5 beside.
    named.insert(1, ('F1 @0.5', 'f1_at_05'))
  if 'f1_smoothed' in first_au:
    named.insert(1, ('F1 smoothed', 'f1_smoothed'))
  header = header[:len(header) - len(_COLUMNS)] + [n for n, _ in named]
  if folds:
    header[len(folds) + 1] = 'F1 mean'
  columns = [per_au_values(results, key) for _, key in named]
  rows = []
  for c, au in enumerate(aus):
    rows.append([f'AU{au}'] + [fmt(f1[c]) for f1 in fold_f1]
                + [fmt(values[c]) for values in columns])
  mean = ['**mean**'] + [fmt(f['mean']['f1']) for f in folds.values()]
  mean += [fmt(results['mean'].get(key, np.nan)) for _, key in named]
  rows.append(mean)
  return header, rows


def markdown_table(results: Mapping[str, Any], aus: Sequence[int]) -> str:
  """Markdown table, rows: AUs + mean; columns: per-fold F1 (cross-fold
  results only), F1, accuracy, AUC, average precision and all-positive
  baseline F1, in percent.
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


def write_atomic(path: str, write: Callable[[Any], None],
                  mode: str = 'w') -> None:
  """Writes through a temp file in the same folder, then os.replace: a
  reader never sees a half-written file, and a crash leaves the old one.
  In a multi-process job only process 0 writes (au_jax/distributed.py)."""
  if not distributed.is_primary():
    return
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
                  name: str = 'results',
                  markdown: str | None = None) -> tuple[str, str]:
  """Writes `<name>.json` and `<name>.md` (and `<name>_predictions.npz` with
  the raw arrays when present), each atomically.

  Returns:
    (json_path, md_path).
  """
  os.makedirs(directory, exist_ok=True)
  json_path = os.path.join(directory, f'{name}.json')
  md_path = os.path.join(directory, f'{name}.md')
  summary = {k: v for k, v in results.items()
             if k not in RAW_KEYS and not isinstance(v, np.ndarray)}
  text = json.dumps(_json_ready(summary), indent=1, allow_nan=False)
  write_atomic(json_path, lambda f: f.write(text + '\n'))
  table = (markdown if markdown is not None
           else markdown_table(results, results['aus']))
  write_atomic(md_path, lambda f: f.write(table + '\n'))
  raw = {k: np.asarray(v) for k, v in results.items()
         if k in RAW_KEYS or isinstance(v, np.ndarray)}
  # Text ids as fixed-width unicode: loadable with allow_pickle=False.
  raw = {k: v.astype(str) if v.dtype.kind == 'O' else v
         for k, v in raw.items()}
  if raw:
    write_atomic(os.path.join(directory, f'{name}_predictions.npz'),
                  lambda f: np.savez_compressed(f, **raw), mode='wb')
  return json_path, md_path
