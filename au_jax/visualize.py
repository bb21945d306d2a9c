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
from au_jax import tables


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
  series = [(f'fold {k}', tables.per_au_values(f, 'f1'), 0.45)
            for k, f in folds.items()]
  mean_label = f'mean F1 {results["mean"]["f1"]:.1f}'
  series.append((mean_label, tables.per_au_values(results, 'f1'), 1.0))
  baseline = tables.per_au_values(results, 'baseline_f1')

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


# ----------------------------------------------------------------------------
# Feature maps (IdenNet poster's picture): t-SNE of the features the AU
# classifier sees, coloured by subject and by one AU, one column per model
# (e.g. with and without the identity branch / FC6 - FC5 subtraction).


def tsne_2d(features: np.ndarray, seed: int = 0,
            perplexity: float = 30.0) -> np.ndarray:
  """[N, D] -> [N, 2] by scikit-learn's t-SNE (PCA initialisation, fixed
  seed). scikit-learn is an optional dependency (the `dev` extra), imported
  only here."""
  try:
    from sklearn import manifold  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "au_jax.visualize.tsne_2d needs scikit-learn, which au_jax itself "
        "does not depend on: pip install 'scikit-learn>=1.4,<2' (or the "
        "dev extra: pip install -e '.[dev]').") from error
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 3:
    raise ValueError(f't-SNE needs [N >= 3, D] features; got shape '
                     f'{features.shape}.')
  # t-SNE requires perplexity < N.
  perplexity = float(min(perplexity, (features.shape[0] - 1) / 3))
  # Exact gradients up to 1,000 points: Barnes-Hut was 60x slower on 30
  # points on a loaded 2-core CPU (22.6 s vs 0.35 s).
  method = 'exact' if features.shape[0] <= 1000 else 'barnes_hut'
  return manifold.TSNE(n_components=2, perplexity=perplexity, init='pca',
                       method=method, random_state=seed
                       ).fit_transform(features)


def same_subject_neighbour_rate(features: np.ndarray,
                                subjects: Sequence[Any],
                                videos: Sequence[Any] | None = None) -> float:
  """Fraction of frames whose nearest other frame (cosine distance, in the
  full feature space, not the t-SNE map) shows the same subject: near 1
  when features cluster by person, near the chance rate sum_s (n_s/N)^2
  when they carry no identity. The number printed beside the picture.

  With `videos` (one id per frame), frames of a frame's own video are not
  candidates: consecutive frames of one video are near-copies, so without
  this the rate is high for any features; with it, it asks whether the
  features find the person again in another video."""
  features = np.asarray(features, np.float64)
  subjects = np.asarray(subjects)
  if features.shape[0] != subjects.shape[0] or features.shape[0] < 2:
    raise ValueError(f'{features.shape[0]} feature rows and '
                     f'{subjects.shape[0]} subjects; need equal counts >= 2.')
  unit = features / np.maximum(
      np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
  similarity = unit @ unit.T
  np.fill_diagonal(similarity, -np.inf)
  if videos is not None:
    videos = np.asarray(videos)
    if videos.shape != subjects.shape:
      raise ValueError(f'videos have shape {videos.shape}; expected '
                       f'{subjects.shape} (one id per frame).')
    same = videos[:, None] == videos[None, :]
    if same.all(axis=1).any():
      raise ValueError('every frame is in one video: no other video to '
                       'search.')
    similarity = np.where(same, -np.inf, similarity)
  nearest = np.argmax(similarity, axis=1)
  return float(np.mean(subjects[nearest] == subjects))


def plot_feature_tsne(panels: Mapping[str, np.ndarray],
                      subjects: Sequence[Any], au_labels: np.ndarray,
                      au: int, path: str, seed: int = 0,
                      videos: Sequence[Any] | None = None
                      ) -> dict[str, float]:
  """One column per entry of `panels` ({title: features [N, D]}, the same N
  frames in each): t-SNE coloured by subject (top) and by AU `au`'s label
  (bottom; 1 present, 0 absent, -1 unknown in grey). Writes `path` (PNG)
  and returns {title: same_subject_neighbour_rate} (with `videos`: the
  nearest frame of another video)."""
  subjects = np.asarray(subjects).astype(str)
  au_labels = np.asarray(au_labels)
  if not panels:
    raise ValueError('plot_feature_tsne: no features given.')
  for title, features in panels.items():
    if np.shape(features)[0] != subjects.shape[0]:
      raise ValueError(f'panel {title!r} has {np.shape(features)[0]} rows, '
                       f'but {subjects.shape[0]} subjects were given.')
  if au_labels.shape != subjects.shape:
    raise ValueError(f'au_labels have shape {au_labels.shape}; expected '
                     f'{subjects.shape} (one label of AU {au} per frame).')
  names = sorted(set(subjects.tolist()))
  colour_index = np.array([names.index(s) for s in subjects])
  colours = plt.get_cmap('tab20' if len(names) > 10 else 'tab10')
  figure, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 8),
                              squeeze=False)
  rates = {}
  for column, (title, features) in enumerate(panels.items()):
    points = tsne_2d(features, seed=seed)
    rates[title] = same_subject_neighbour_rate(features, subjects, videos)
    top, bottom = axes[0, column], axes[1, column]
    top.scatter(points[:, 0], points[:, 1], s=6,
                c=[colours(i % colours.N) for i in colour_index])
    where = '' if videos is None else ' in another video'
    top.set_title(f'{title}\nby subject (nearest frame{where}: same '
                  f'subject {100 * rates[title]:.0f}%)', fontsize='small')
    for value, colour, name in ((-1, 'lightgrey', 'unknown'),
                                (0, 'tab:blue', 'absent'),
                                (1, 'tab:red', 'present')):
      rows = au_labels == value
      if rows.any():
        bottom.scatter(points[rows, 0], points[rows, 1], s=6, c=colour,
                       label=f'{name} ({int(rows.sum())})')
    bottom.set_title(f'by {aus_lib.au_name(au)}', fontsize='small')
    bottom.legend(fontsize='x-small', markerscale=2)
    for axis in (top, bottom):
      axis.set_xticks([])
      axis.set_yticks([])
  if len(names) <= 20:
    handles = [plt.Line2D([], [], marker='o', linestyle='', markersize=4,
                          color=colours(i % colours.N)) for i in
               range(len(names))]
    figure.legend(handles, names, loc='center right', fontsize='x-small',
                  title='subject')
  _save(figure, path)
  return rates
