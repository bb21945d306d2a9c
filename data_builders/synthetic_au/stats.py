r"""Difficulty figures of a built synthetic_au config.

  python -m data_builders.synthetic_au.stats --config=default \
      --data_dir=/tmp/synth_data [--probe]

Prints per-AU base rates, the share of unknown labels and the F1 of the
trivial all-positive predictor (the floor every method must beat), as a
Markdown table. `--probe` adds difficulty checks on held-out subjects: the
best single landmark-coordinate or pixel threshold (chosen on the training
subjects; such shortcuts must stay near the floor) and a linear classifier on
HOG features (shows the cues are learnable: a CNN should do at least as well).
"""

import argparse

import numpy as np

from au_jax import aus
from au_jax import prepare
from data_builders.synthetic_au import episodes
from data_builders.synthetic_au import generate


def f1_score(predicted: np.ndarray, labels: np.ndarray) -> float:
  """F1 of binary predictions [N] on labels [N] (1/0/-1; -1 ignored)."""
  known = labels >= 0
  predicted, labels = predicted[known].astype(bool), labels[known] == 1
  tp = np.sum(predicted & labels)
  denominator = predicted.sum() + labels.sum()
  return float(2 * tp / denominator) if denominator else 0.0


def best_threshold_f1(features: np.ndarray,
                      labels: np.ndarray) -> tuple[float, int, float, int]:
  """Best F1 of `sign * feature >= threshold` over features and thresholds.

  Args:
    features: [N, D] float.
    labels: [N] 1/0 (unknown rows removed beforehand).

  Returns:
    (f1, feature index, threshold, sign).
  """
  labels = labels.astype(bool)
  positives = labels.sum()
  best = (0.0, 0, 0.0, 1)
  for sign in (1, -1):
    values = sign * features
    order = np.argsort(-values, axis=0, kind='stable')  # descending
    sorted_labels = labels[order]  # [N, D]
    tp = np.cumsum(sorted_labels, axis=0)
    predicted = np.arange(1, len(labels) + 1)[:, None]
    f1 = 2 * tp / (predicted + positives)
    # A threshold can only sit between distinct values.
    sorted_values = np.take_along_axis(values, order, axis=0)
    valid = np.ones_like(f1, bool)
    valid[:-1] = sorted_values[:-1] != sorted_values[1:]
    f1 = np.where(valid, f1, 0.0)
    row, column = np.unravel_index(np.argmax(f1), f1.shape)
    if f1[row, column] > best[0]:
      best = (float(f1[row, column]), int(column),
              float(sorted_values[row, column] * sign), sign)
  return best


def load(config: str, data_dir: str, split: str | None = None,
         images: bool = False) -> dict[str, np.ndarray]:
  builder = prepare.ensure_built('synthetic_au', config, data_dir)
  split = split or '+'.join(sorted(builder.info.splits))
  source = builder.as_data_source(split=split)
  rows = [source[i] for i in range(len(source))]
  out = {key: np.stack([r[key] for r in rows])
         for key in ('au_occurrence', 'landmarks', 'identity')}
  if images:
    out['image'] = np.stack([r['image'] for r in rows])
  return out


def rates_table(occurrence: np.ndarray) -> str:
  """Markdown: AU, base rate, BP4D target, unknown share, all-positive F1."""
  stats = generate.label_statistics(occurrence)
  lines = ['| AU | base rate | target | unknown | all-positive F1 |',
           '|---|---|---|---|---|']
  for i, au in enumerate(aus.SYNTHETIC_AUS):
    lines.append(f"| {au} | {stats['base_rate'][i]:.3f} | "
                 f'{episodes.TARGET_RATES[au]:.2f} | '
                 f"{stats['unknown'][i]:.3f} | "
                 f"{100 * stats['all_positive_f1'][i]:.1f} |")
  bp4d = aus.label_indices('synthetic_au', aus.BP4D_AUS)
  lines.append(f"| mean (15 AUs) | | | {stats['unknown'].mean():.3f} | "
               f"{100 * stats['all_positive_f1'].mean():.1f} |")
  lines.append(f'| mean (BP4D 12) | | | | '
               f"{100 * stats['all_positive_f1'][bp4d].mean():.1f} |")
  return '\n'.join(lines)


def hog_features(images: np.ndarray) -> np.ndarray:
  """[N, S, S, 3] uint8 -> [N, 4356] HOG of the 96x96 grey image."""
  import cv2  # pylint: disable=g-import-not-at-top
  hog = cv2.HOGDescriptor((96, 96), (16, 16), (8, 8), (8, 8), 9)
  return np.stack([hog.compute(cv2.resize(
      cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (96, 96),
      interpolation=cv2.INTER_AREA)).ravel() for image in images])


def probe(data: dict[str, np.ndarray], test_subjects: np.ndarray) -> str:
  """Held-out-subject F1 of single-feature rules and a linear HOG probe.

  Rules (one landmark coordinate, or one pixel of the 32x32 grey image, and
  a threshold) are chosen on the training subjects, as is the logistic
  regression on HOG features (96x96 grey input, about DRML's scale).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  from sklearn import linear_model  # pylint: disable=g-import-not-at-top
  test = np.isin(data['identity'], test_subjects)
  coordinates = data['landmarks'].reshape(len(test), -1)
  pixels = np.stack([cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY),
                                (32, 32), interpolation=cv2.INTER_AREA)
                     for image in data['image']]).reshape(len(test), -1)
  hog = hog_features(data['image'])
  hog = (hog - hog[~test].mean(0)) / (hog[~test].std(0) + 1e-6)
  lines = ['| AU | all-positive | best landmark rule | best pixel rule | '
           'linear on HOG |', '|---|---|---|---|---|']
  scores = []
  for i, au in enumerate(aus.SYNTHETIC_AUS):
    labels = data['au_occurrence'][:, i]
    train = ~test & (labels >= 0)
    row = [f1_score(np.ones(test.sum()), labels[test])]
    for features in (coordinates, pixels.astype(np.float32)):
      _, column, threshold, sign = best_threshold_f1(features[train],
                                                     labels[train])
      row.append(f1_score(sign * features[test, column] >= sign * threshold,
                          labels[test]))
    model = linear_model.LogisticRegression(
        C=0.001, max_iter=200, class_weight='balanced')
    model.fit(hog[train], labels[train])
    row.append(f1_score(model.predict(hog[test]), labels[test]))
    scores.append(row)
    lines.append(f'| {au} | ' + ' | '.join(f'{100 * v:.1f}' for v in row)
                 + ' |')
  mean = 100 * np.mean(scores, axis=0)
  lines.append('| mean | ' + ' | '.join(f'{v:.1f}' for v in mean) + ' |')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='default')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--probe', action='store_true')
  parser.add_argument('--test_subjects', default='16-23',
                      help='0-based identity range held out by --probe.')
  args = parser.parse_args()
  data = load(args.config, args.data_dir, images=args.probe)
  print(f"{len(data['identity'])} frames, "
        f"{len(np.unique(data['identity']))} subjects\n")
  print(rates_table(data['au_occurrence']))
  if args.probe:
    low, high = (int(v) for v in args.test_subjects.split('-'))
    print(f'\nHeld-out subjects {low}-{high} (0-based), trained on the rest:\n')
    print(probe(data, np.arange(low, high + 1)))


if __name__ == '__main__':
  main()
