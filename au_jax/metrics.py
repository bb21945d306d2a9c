"""Per-AU detection metrics (numpy) and clu metrics for the train/eval steps.

Conventions (../shared/reference/protocols.md, "Metrics"):
  * labels are 1 present, 0 absent, -1 unknown; unknown labels and rows whose
    mask is False are left out of every count;
  * a frame is predicted positive when its probability is >= the threshold;
  * F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall.
    When 2 TP + FP + FN = 0 (an AU with no positive labels and no positive
    predictions, or no known labels at all) F1 is 0, the convention of the AU
    literature's evaluation code (scikit-learn's `zero_division=0`): such an
    AU pulls the mean down instead of vanishing from it;
  * accuracy is nan for an AU with no known labels (nothing to be right
    about); AUC is nan when an AU has only one class among its known labels;
    average precision is nan when an AU has no positives.
All numpy functions return fractions in [0, 1]; evaluate.py reports percent.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics


def _known(labels: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
  """[N, C] bool: label known (not -1) and row/entry not masked out."""
  if labels.ndim != 2:
    raise ValueError(f'labels must be [N, C]; got shape {labels.shape}.')
  known = labels >= 0
  if mask is not None:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 1:
      mask = mask[:, None]
    if mask.shape[0] != labels.shape[0]:
      raise ValueError(
          f'mask {mask.shape} does not match labels {labels.shape}.')
    known = known & mask
  return known


def _check_binary(name: str, values: np.ndarray, labels: np.ndarray) -> None:
  if values.shape != labels.shape:
    raise ValueError(
        f'{name} {values.shape} and labels {labels.shape} must both be [N, C].')


def confusion_counts(labels, predictions, mask=None) -> dict[str, np.ndarray]:
  """Per-AU true/false positive/negative counts over known labels.

  Args:
    labels: [N, C] int in {1, 0, -1}.
    predictions: [N, C] in {0, 1} (or bool).
    mask: optional [N] or [N, C] bool, False = ignore (e.g. padding rows).

  Returns:
    {'tp', 'fp', 'fn', 'tn'}: each [C] int64.
  """
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  _check_binary('predictions', predictions, labels)
  known = _known(labels, mask)
  positive = known & (labels == 1)
  negative = known & (labels == 0)
  predicted = predictions.astype(bool)
  return {
      'tp': (positive & predicted).sum(axis=0),
      'fp': (negative & predicted).sum(axis=0),
      'fn': (positive & ~predicted).sum(axis=0),
      'tn': (negative & ~predicted).sum(axis=0),
  }


def f1_from_counts(tp, fp, fn):
  """[C] F1 = 2TP / (2TP + FP + FN); 0 where the denominator is 0."""
  xp = jnp if isinstance(tp, jax.Array) else np
  denominator = 2 * tp + fp + fn
  return xp.where(denominator > 0,
                  2 * tp / xp.maximum(denominator, 1), 0.0)


def accuracy_from_counts(tp, fp, fn, tn):
  """[C] (TP + TN) / known; nan where an AU has no known label."""
  xp = jnp if isinstance(tp, jax.Array) else np
  total = tp + fp + fn + tn
  return xp.where(total > 0, (tp + tn) / xp.maximum(total, 1), xp.nan)


def f1_frame(labels, predictions, mask=None) -> np.ndarray:
  """Per-AU frame-level F1 (fraction), unknown labels ignored.

  Args:
    labels: [N, C] int in {1, 0, -1} (-1 unknown, ignored).
    predictions: [N, C] in {0, 1}.
    mask: optional [N] or [N, C] bool, False = ignore.

  Returns:
    [C] float64 in [0, 1]; 0 for an AU with no positive label and no positive
    prediction (see the module docstring).
  """
  counts = confusion_counts(labels, predictions, mask)
  return f1_from_counts(counts['tp'], counts['fp'], counts['fn'])


def accuracy(labels, predictions, mask=None) -> np.ndarray:
  """Per-AU accuracy over known labels: [C], nan for an AU with none."""
  counts = confusion_counts(labels, predictions, mask)
  return accuracy_from_counts(counts['tp'], counts['fp'], counts['fn'],
                              counts['tn'])


def _average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks of `values` [n], tied values sharing their mean rank."""
  _, inverse, counts = np.unique(values, return_inverse=True,
                                 return_counts=True)
  last_rank = np.cumsum(counts)
  return (last_rank - (counts - 1) / 2.0)[inverse]


def known_columns(labels, scores, mask=None):
  """Yields, per AU, (positive [n_c] bool, score [n_c]) over its known,
  unmasked frames; labels/scores [N, C], mask [N] or [N, C]."""
  labels = np.asarray(labels)
  scores = np.asarray(scores, dtype=np.float64)
  _check_binary('scores', scores, labels)
  known = _known(labels, mask)
  for c in range(labels.shape[1]):
    keep = known[:, c]
    yield labels[keep, c] == 1, scores[keep, c]


def auc(labels, scores, mask=None) -> np.ndarray:
  """Per-AU ROC AUC via the rank-sum (Mann-Whitney U) statistic.

  AUC = (sum of the positives' ranks - P (P + 1) / 2) / (P N), ranks over the
  AU's known frames with ties given their average rank, so a tied
  positive/negative pair counts one half (as scikit-learn's roc_auc_score).

  Args:
    labels: [N, C] int in {1, 0, -1}.
    scores: [N, C] float (probabilities or logits: any monotone score).
    mask: optional [N] or [N, C] bool.

  Returns:
    [C] in [0, 1]; nan for an AU whose known labels hold only one class.
  """
  result = []
  for positive, score in known_columns(labels, scores, mask):
    num_positive = positive.sum()
    num_negative = positive.size - num_positive
    if num_positive == 0 or num_negative == 0:
      result.append(np.nan)
      continue
    ranks = _average_ranks(score)
    rank_sum = ranks[positive].sum()
    result.append((rank_sum - num_positive * (num_positive + 1) / 2.0)
                  / (num_positive * num_negative))
  return np.asarray(result, dtype=np.float64)


def average_precision(labels, scores, mask=None) -> np.ndarray:
  """Per-AU average precision: sum_k (R_k - R_{k-1}) P_k.

  The thresholds k are the distinct scores in decreasing order (tied frames
  enter together), as scikit-learn's average_precision_score (no
  interpolation).

  Args:
    labels: [N, C] int in {1, 0, -1}.
    scores: [N, C] float.
    mask: optional [N] or [N, C] bool.

  Returns:
    [C] in [0, 1]; nan for an AU with no positive label.
  """
  result = []
  for positive, score in known_columns(labels, scores, mask):
    num_positive = positive.sum()
    if num_positive == 0:
      result.append(np.nan)
      continue
    distinct, inverse = np.unique(score, return_inverse=True)
    # Per distinct score (highest first): frames and positives at it.
    frames = np.bincount(inverse, minlength=distinct.size)[::-1]
    hits = np.bincount(inverse, weights=positive,
                       minlength=distinct.size)[::-1]
    true_positives = np.cumsum(hits)
    precision = true_positives / np.cumsum(frames)
    recall_step = hits / num_positive
    result.append(float((recall_step * precision).sum()))
  return np.asarray(result, dtype=np.float64)


# ---------------------------------------------------------------------------
# clu metrics: jnp, usable inside jit/pmap steps.


@flax.struct.dataclass
class AUConfusion(clu_metrics.Metric):
  """Per-AU confusion counts [C], summed over batches and devices.

  Built from the model outputs `logits` [B, C], `labels` [B, C] (1/0/-1) and
  optional `mask` [B] (False on padding rows). A frame is predicted positive
  when sigmoid(logit) >= `THRESHOLD`, as in evaluate.compute_metrics.
  In a pmapped eval step use
  `EvalMetrics.gather_from_model_output(axis_name='batch', ...)`.
  """
  tp: jax.Array
  fp: jax.Array
  fn: jax.Array
  tn: jax.Array

  THRESHOLD = 0.5

  @classmethod
  def empty(cls) -> 'AUConfusion':
    # Shape-less zeros: broadcast against the first real update in merge.
    zero = jnp.array(0, jnp.int32)
    return cls(tp=zero, fp=zero, fn=zero, tn=zero)

  @classmethod
  def from_model_output(cls, logits: jax.Array, labels: jax.Array,
                        mask: jax.Array | None = None,
                        **_) -> 'AUConfusion':
    known = labels >= 0
    if mask is not None:
      known = known & mask.astype(bool).reshape(mask.shape[0], -1)
    predicted = jax.nn.sigmoid(logits.astype(jnp.float32)) >= cls.THRESHOLD
    positive = known & (labels == 1)
    negative = known & (labels == 0)
    count = lambda x: x.astype(jnp.int32).sum(axis=0)
    return cls(tp=count(positive & predicted), fp=count(negative & predicted),
               fn=count(positive & ~predicted),
               tn=count(negative & ~predicted))

  def merge(self, other: 'AUConfusion') -> 'AUConfusion':
    return type(self)(tp=self.tp + other.tp, fp=self.fp + other.fp,
                      fn=self.fn + other.fn, tn=self.tn + other.tn)

  def compute(self) -> dict[str, jax.Array]:
    """{'f1': [C], 'accuracy': [C], 'mean_f1': [], 'mean_accuracy': []}.

    Fractions; F1 0 and accuracy nan by the numpy functions' rules. The mean
    accuracy skips nan AUs.
    """
    tp, fp, fn, tn = (jnp.asarray(x) for x in (self.tp, self.fp, self.fn,
                                                self.tn))
    f1 = f1_from_counts(tp, fp, fn)
    acc = accuracy_from_counts(tp, fp, fn, tn)
    return {'f1': f1, 'accuracy': acc, 'mean_f1': f1.mean(),
            'mean_accuracy': jnp.nanmean(acc)}


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  """Training scalars: `loss` (mean over steps) and the last `learning_rate`.

  TrainMetrics.single_from_model_output(loss=..., learning_rate=...) or, in a
  pmapped step, .gather_from_model_output(...). Pass `loss` as a scalar.
  """
  loss: clu_metrics.Average.from_output('loss')
  learning_rate: clu_metrics.LastValue.from_output('learning_rate')


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  """Evaluation: mean per-frame `loss` and per-AU confusion counts.

  Pass `loss` per example ([B], e.g. losses.sigmoid_cross_entropy(...,
  normalise='none')) together with `mask` [B] so padding rows are not
  averaged in; `logits` [B, C] and `labels` [B, C] feed `au`.
  """
  loss: clu_metrics.Average.from_output('loss')
  au: AUConfusion
