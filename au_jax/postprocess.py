"""Decision rules fitted on validation data: thresholds and median smoothing.

Both are tuned on validation frames only (never on test labels) and then
applied unchanged at test time:
  * `tune_thresholds`: one threshold per AU maximising F1 on the pooled
    validation frames, regularised: an AU with fewer than `min_positives`
    positive validation frames keeps 0.5 (a threshold fitted to a handful of
    frames does not generalise), and the search is over a grid, not every
    distinct score;
  * `median_smooth`: AUNets' temporal median filter over each video's binary
    predictions, one video = one (subject, sequence, view); it never mixes
    two videos or two views of one video;
  * `tune_median_window`: the window from the paper's {3, 5, 7, 9, 10, 11}
    that maximises the validation mean F1 after smoothing (F1 without
    smoothing is reported beside it, fold_evaluation.finish_au_results).
"""

from typing import Sequence

import numpy as np

from au_jax import metrics

# AUNets sec. 4.1.6: "we test with window sizes {3,5,7,9,10,11}".
MEDIAN_WINDOWS = (3, 5, 7, 9, 10, 11)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def tune_thresholds(labels, probabilities, mask=None, min_positives: int = 10,
                    grid: Sequence[float] | None = None,
                    default: float = 0.5) -> np.ndarray:
  """Per-AU threshold maximising F1 on the given (validation) frames.

  Predicting positive at probability >= t gives F1(t) = 2 TP(t) /
  (P + predicted(t)); the highest t reaching the maximum is returned.

  Args:
    labels: [N, C] int in {1, 0, -1}.
    probabilities: [N, C].
    mask: optional [N] or [N, C] bool.
    min_positives: AUs with fewer positive frames keep `default`.
    grid: candidate thresholds; None = `THRESHOLD_GRID` (0.05 ... 0.95).
      An empty tuple () searches every distinct score (unregularised).
    default: threshold of AUs with too few positives.

  Returns:
    [C] float64 thresholds.
  """
  result = []
  for positive, score in metrics.known_columns(labels, probabilities, mask):
    num_positive = positive.sum()
    if num_positive == 0 or num_positive < min_positives:
      result.append(default)
      continue
    if grid is not None and len(grid) == 0:
      candidates = np.unique(score)
    else:
      candidates = np.asarray(THRESHOLD_GRID if grid is None else grid)
    predicted = score[None, :] >= candidates[:, None]
    hits = (predicted & (positive[None, :] > 0)).sum(axis=1)
    f1 = 2 * hits / (num_positive + predicted.sum(axis=1))
    best = np.flatnonzero(f1 == f1.max())
    result.append(float(candidates[best[-1]]))
  return np.asarray(result, np.float64)


def video_ids(*columns) -> np.ndarray:
  """[N] int id of each frame's video from id columns (e.g. subject,
  sequence, view): frames share an id only if every column agrees."""
  columns = [np.asarray(c) for c in columns if c is not None]
  if not columns:
    raise ValueError('video_ids needs at least one id column.')
  keys = np.array(['\x1f'.join(str(c[i]) for c in columns)
                   for i in range(len(columns[0]))])
  return np.unique(keys, return_inverse=True)[1].reshape(-1)


def median_smooth(predictions, sequence_ids, window: int,
                  frame_index=None) -> np.ndarray:
  """Median filter over time within each video (AUNets' post-processing).

  Frames of a video are ordered by `frame_index` when given, else taken in
  the order they appear. Frame t's value is the median of frames
  t - window // 2, ..., t + (window - 1) // 2: an odd window is centred on
  t; an even one (the paper's 10) has one frame more before t than after
  it, and its median is the upper of the two middle values (sorted value
  window // 2), so binary inputs stay binary and a 5-5 tie in a window of
  10 gives 1. This is scipy.ndimage.median_filter's convention (origin 0).
  Each video is padded by repeating its first and last frame, so a window
  never mixes two videos and the edges are not pulled towards 0 as zero
  padding (scipy.signal.medfilt) would.

  Args:
    predictions: [N, C] binary predictions or probabilities.
    sequence_ids: [N] video id of each frame (str, bytes or int; use
      `video_ids(subject, sequence, view)` so views stay apart), or a tuple
      of such columns.
    window: window length >= 1 (AUNets: {3, 5, 7, 9, 10, 11}, 7 best).
    frame_index: optional [N] frame numbers.

  Returns:
    [N, C] smoothed values, same dtype as `predictions`.
  """
  if (isinstance(window, bool) or not isinstance(window, (int, np.integer))
      or window < 1):
    raise ValueError(f'median window must be an integer >= 1; got '
                     f'{window!r}.')
  window = int(window)
  if isinstance(sequence_ids, tuple):
    sequence_ids = video_ids(*sequence_ids)
  predictions = np.asarray(predictions)
  sequence_ids = np.asarray(sequence_ids)
  if predictions.ndim != 2 or sequence_ids.shape != predictions.shape[:1]:
    raise ValueError(f'predictions {predictions.shape} must be [N, C] and '
                     f'sequence_ids {sequence_ids.shape} [N].')
  result = predictions.copy()
  if window == 1:
    return result
  before, after = window // 2, (window - 1) // 2
  _, inverse = np.unique(sequence_ids, return_inverse=True)
  inverse = inverse.reshape(-1)
  for group in range(inverse.max() + 1 if inverse.size else 0):
    rows = np.flatnonzero(inverse == group)
    if frame_index is not None:
      rows = rows[np.argsort(np.asarray(frame_index)[rows], kind='stable')]
    padded = np.pad(predictions[rows], ((before, after), (0, 0)), mode='edge')
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    # Sorted value window // 2: the median (odd), the upper middle (even).
    middle = np.partition(windows, window // 2, axis=-1)[..., window // 2]
    result[rows] = middle.astype(predictions.dtype)
  return result


def mean_f1(labels, predictions) -> float:
  """Unweighted mean over AUs of F1 (percent) of binary predictions."""
  counts = metrics.confusion_counts(labels, predictions)
  f1 = metrics.f1_from_counts(counts['tp'], counts['fp'], counts['fn'])
  return float(100 * np.mean(f1))


def tune_median_window(labels, probabilities, thresholds, videos,
                       frame_index=None,
                       windows: Sequence[int] = MEDIAN_WINDOWS
                       ) -> tuple[int, dict[int, float]]:
  """The window maximising validation mean F1 of smoothed predictions.

  Returns (best window, {window: mean F1}); ties go to the smaller window.
  """
  predictions = (np.asarray(probabilities) >= np.asarray(thresholds)
                 ).astype(np.int8)
  scores = {int(w): mean_f1(labels, median_smooth(predictions, videos, int(w),
                                                  frame_index))
            for w in windows}
  best = max(scores.values())
  return min(w for w, s in scores.items() if s == best), scores
