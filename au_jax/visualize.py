"""Result plots: per-AU F1 against the all-positive baseline, training curves.

matplotlib's Agg backend (no display needed); figures are written as PNG
through a temp file + os.replace, so a plot is never half-written.
"""

import json
import os
import tempfile
from typing import Any, Mapping, Sequence

from absl import logging
import matplotlib
matplotlib.use('Agg')
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from au_jax import aus as aus_lib
from au_jax import distributed
from au_jax import evaluate


def _save(figure, path: str) -> str:
  if not distributed.is_primary():  # Multi-process: process 0 writes.
    plt.close(figure)
    return path
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temp_path = tempfile.mkstemp(dir=directory, prefix='.tmp_',
                                       suffix='.png')
  os.close(handle)
  try:
    figure.savefig(temp_path, format='png', dpi=100, bbox_inches='tight')
    os.chmod(temp_path, 0o644)
    os.replace(temp_path, path)
  finally:
    plt.close(figure)
    if os.path.exists(temp_path):
      os.remove(temp_path)
  return path


def plot_per_au_f1(results: Mapping[str, Any], aus: Sequence[int],
                   path: str) -> str:
  """Bar chart of per-AU F1 (each fold, and the mean) vs all-positive F1.

  Args:
    results: a results dict from evaluate.compute_metrics/evaluate (one
      split) or evaluate.cross_fold (then each fold gets its own bars).
    aus: the C FACS ids, in results order.
    path: PNG file to write.

  Returns:
    `path`.
  """
  aus = aus_lib.check_aus(aus, where='aus')
  if tuple(results['aus']) != aus:
    raise ValueError(f'results are for AUs {results["aus"]}, not {aus}.')
  folds = results.get('folds', {})
  series = [(f'fold {k}', evaluate.per_au_values(f, 'f1'), 0.45)
            for k, f in folds.items()]
  mean_label = f'mean F1 {results["mean"]["f1"]:.1f}'
  series.append((mean_label, evaluate.per_au_values(results, 'f1'), 1.0))
  baseline = evaluate.per_au_values(results, 'baseline_f1')

  x = np.arange(len(aus) + 1)  # + the mean over AUs
  width = 0.8 / len(series)
  figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(x) + 2), 4))
  colours = plt.get_cmap('tab10')
  for i, (label, f1, alpha) in enumerate(series):
    heights = np.append(f1, np.nanmean(f1))
    is_mean = i == len(series) - 1
    axis.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(heights), width,
             label=label, alpha=alpha,
             color='tab:blue' if is_mean else colours(i + 1))
  # The floor: F1 of calling every frame positive, one tick per AU.
  axis.hlines(np.append(baseline, np.nanmean(baseline)), x - 0.42, x + 0.42,
              colors='black', linestyles='dashed',
              label=f'all-positive F1 {results["mean"]["baseline_f1"]:.1f}')
  axis.set_xticks(x, [f'AU{au}' for au in aus] + ['mean'])
  axis.set_ylabel('F1-frame (%)')
  axis.set_ylim(0, 100)
  axis.set_title(f'Per-AU F1, {results["num_frames"]} frames')
  axis.legend(fontsize='small', ncol=2)
  axis.grid(axis='y', alpha=0.3)
  return _save(figure, path)


def read_metrics_jsonl(path: str) -> list[dict[str, float]]:
  """Records of a JSON-lines metrics file, each with an int 'step'.

  A line that is not a JSON object with a 'step' (e.g. the last line of a
  run killed mid-write) is skipped, counted and logged with its line number;
  a file with no usable line raises.
  """
  records, skipped = [], []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        record['step'] = int(record['step'])
      except (ValueError, TypeError, KeyError):
        skipped.append(number)
        continue
      records.append(record)
  if skipped:
    logging.warning('%s: skipped %d unreadable line(s): %s', path,
                    len(skipped), skipped[:10])
  if not records:
    raise ValueError(f'{path}: no line with a JSON object and a "step".')
  return records


def plot_training_curves(metrics_jsonl_path: str, path: str) -> str:
  """Plots every scalar of a metrics.jsonl file against 'step'.

  Panels: losses (keys containing 'loss'), the learning rate (log scale) and
  the remaining metrics (e.g. 'val_mean_f1'); throughput keys
  ('images_per_second') get their own panel. Keys absent from some lines are
  plotted where present.

  Returns:
    `path`.
  """
  records = read_metrics_jsonl(metrics_jsonl_path)
  keys = sorted({k for r in records for k, v in r.items()
                 if k != 'step' and isinstance(v, (int, float))})
  groups = {'loss': [], 'learning rate': [], 'metrics': [], 'throughput': []}
  for key in keys:
    if 'loss' in key:
      groups['loss'].append(key)
    elif key in ('learning_rate', 'lr'):
      groups['learning rate'].append(key)
    elif 'per_second' in key:
      groups['throughput'].append(key)
    else:
      groups['metrics'].append(key)
  groups = {name: members for name, members in groups.items() if members}
  if not groups:
    raise ValueError(f'{metrics_jsonl_path}: no scalar besides "step".')
  figure, axes = plt.subplots(len(groups), 1, sharex=True,
                              figsize=(7, 2.6 * len(groups)), squeeze=False)
  for axis, (name, members) in zip(axes[:, 0], groups.items()):
    for key in members:
      points = sorted((r['step'], r[key]) for r in records
                      if isinstance(r.get(key), (int, float)))
      steps, values = zip(*points)
      axis.plot(steps, values, marker='.' if len(points) < 30 else None,
                label=key)
    if name == 'learning rate' and all(
        r[k] > 0 for r in records for k in members if k in r):
      axis.set_yscale('log')
    axis.set_ylabel(name)
    axis.legend(fontsize='small')
    axis.grid(alpha=0.3)
  axes[-1, 0].set_xlabel('step')
  return _save(figure, path)
