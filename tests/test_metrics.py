"""Tests of au_jax.metrics: hand-computed values and scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from au_jax import metrics

jax.config.update('jax_disable_most_optimizations', True)

# 5 frames x 4 AUs; the last row is padding in the masked tests.
LABELS = np.array([[1, 0, -1, 0],
                   [1, 1, -1, 0],
                   [0, 1, -1, 0],
                   [0, 0, -1, 0],
                   [1, 1, 1, 1]])
PREDICTIONS = np.array([[1, 0, 1, 0],
                        [0, 1, 0, 0],
                        [1, 1, 1, 0],
                        [0, 1, 0, 0],
                        [0, 0, 0, 1]])


def test_f1_and_accuracy_by_hand():
  mask = np.array([True, True, True, True, False])
  # AU0: tp=1 (row0), fn=1 (row1), fp=1 (row2), tn=1 -> F1 = 2/4, acc 2/4.
  # AU1: tp=2, fp=1 (row3), tn=1 -> F1 = 4/5, acc 3/4.
  # AU2: all unknown -> F1 0 by convention, accuracy nan.
  # AU3: no positives, no predicted positives -> F1 0; acc 4/4.
  np.testing.assert_allclose(metrics.f1_frame(LABELS, PREDICTIONS, mask),
                             [0.5, 0.8, 0.0, 0.0])
  np.testing.assert_allclose(metrics.accuracy(LABELS, PREDICTIONS, mask),
                             [0.5, 0.75, np.nan, 1.0])
  counts = metrics.confusion_counts(LABELS, PREDICTIONS, mask)
  np.testing.assert_array_equal(counts['tp'], [1, 2, 0, 0])
  np.testing.assert_array_equal(counts['fp'], [1, 1, 0, 0])
  np.testing.assert_array_equal(counts['fn'], [1, 0, 0, 0])
  np.testing.assert_array_equal(counts['tn'], [1, 1, 0, 4])


def test_without_mask_padding_row_counts():
  # Row 4 now counts: AU0 fn=2 -> F1 2/5; AU2 fn=1 -> 0; AU3 tp=1 -> 1.
  np.testing.assert_allclose(metrics.f1_frame(LABELS, PREDICTIONS),
                             [0.4, 2 * 2 / (4 + 1 + 1), 0.0, 1.0])


def test_per_entry_mask_and_bad_shapes():
  mask = np.ones_like(LABELS, bool)
  mask[:, 0] = False
  assert metrics.f1_frame(LABELS, PREDICTIONS, mask)[0] == 0.0
  assert np.isnan(metrics.accuracy(LABELS, PREDICTIONS, mask)[0])
  with pytest.raises(ValueError, match='mask'):
    metrics.f1_frame(LABELS, PREDICTIONS, np.ones(3, bool))
  with pytest.raises(ValueError, match='predictions'):
    metrics.f1_frame(LABELS, PREDICTIONS[:, :2])


def test_f1_matches_sklearn_on_random_data():
  rng = np.random.default_rng(0)
  labels = rng.integers(-1, 2, size=(200, 3))
  predictions = rng.integers(0, 2, size=(200, 3))
  ours = metrics.f1_frame(labels, predictions)
  for c in range(3):
    keep = labels[:, c] >= 0
    np.testing.assert_allclose(
        ours[c], sk_metrics.f1_score(labels[keep, c], predictions[keep, c]))


def _random_scores_with_ties(seed, n=300, c=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(-1, 2, size=(n, c))
  # Scores rounded to 1 decimal: many ties, within and across classes.
  scores = np.round(rng.random((n, c)) * 0.6 + 0.4 * (labels == 1), 1)
  mask = rng.random(n) > 0.1
  return labels, scores, mask


def test_auc_and_average_precision_match_sklearn_with_ties():
  for seed in range(3):
    labels, scores, mask = _random_scores_with_ties(seed)
    ours_auc = metrics.auc(labels, scores, mask)
    ours_ap = metrics.average_precision(labels, scores, mask)
    for c in range(labels.shape[1]):
      keep = mask & (labels[:, c] >= 0)
      np.testing.assert_allclose(
          ours_auc[c], sk_metrics.roc_auc_score(labels[keep, c],
                                                scores[keep, c]))
      np.testing.assert_allclose(
          ours_ap[c], sk_metrics.average_precision_score(labels[keep, c],
                                                         scores[keep, c]))


def test_auc_ap_one_class_is_nan():
  labels = np.array([[1, 0, -1], [1, 0, -1], [1, 0, 1]])
  scores = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
  result = metrics.auc(labels, scores)
  assert np.isnan(result).all()
  ap = metrics.average_precision(labels, scores)
  np.testing.assert_allclose(ap, [1.0, np.nan, 1.0])
  # Perfect ranking -> 1, reversed -> 0, all tied -> 0.5.
  labels = np.array([[1, 1, 1], [0, 0, 0]])
  scores = np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]])
  np.testing.assert_allclose(metrics.auc(labels, scores), [1.0, 0.0, 0.5])


def test_au_confusion_merged_over_two_batches_equals_numpy():
  rng = np.random.default_rng(1)
  labels = rng.integers(-1, 2, size=(10, 3)).astype(np.int8)
  logits = rng.normal(size=(10, 3)).astype(np.float32)
  mask = np.ones(10, bool)
  mask[-2:] = False  # padding rows of the last batch
  step = jax.jit(lambda lg, lb, m: metrics.EvalMetrics.single_from_model_output(
      logits=lg, labels=lb, mask=m,
      loss=jnp.abs(lg).sum(axis=1)))
  collected = metrics.EvalMetrics.empty()
  for rows in (slice(0, 6), slice(6, 10)):
    collected = collected.merge(step(logits[rows], labels[rows], mask[rows]))
  result = collected.compute()
  predictions = (1 / (1 + np.exp(-logits))) >= 0.5
  np.testing.assert_allclose(result['au']['f1'],
                             metrics.f1_frame(labels, predictions, mask),
                             rtol=1e-6)
  np.testing.assert_allclose(result['au']['accuracy'],
                             metrics.accuracy(labels, predictions, mask),
                             rtol=1e-6)
  np.testing.assert_allclose(result['au']['mean_f1'],
                             metrics.f1_frame(labels, predictions,
                                              mask).mean(), rtol=1e-6)
  np.testing.assert_allclose(result['loss'],
                             np.abs(logits[:8]).sum(axis=1).mean(), rtol=1e-6)


def test_au_confusion_gathered_in_pmap():
  # One local CPU device: the gather path (all_gather + reduce) still runs.
  labels = np.array([[[1, 0], [0, -1], [1, 1]]], np.int8)
  logits = np.array([[[2.0, 1.0], [-1.0, 3.0], [-2.0, 0.5]]], np.float32)
  mask = np.array([[True, True, False]])

  def eval_step(lg, lb, m):
    return metrics.EvalMetrics.gather_from_model_output(
        logits=lg, labels=lb, mask=m, loss=jnp.zeros(lg.shape[0]))

  gathered = jax.pmap(eval_step, axis_name='batch')(logits, labels, mask)
  result = gathered.unreplicate().compute()
  # AU0: tp (row 0), tn (row 1) -> F1 1; AU1: fp (row 0), row 1 unknown.
  np.testing.assert_allclose(result['au']['f1'], [1.0, 0.0])
  np.testing.assert_allclose(result['au']['accuracy'], [1.0, 0.0])


def test_train_metrics():
  collected = metrics.TrainMetrics.empty()
  for loss, lr in ((1.0, 0.1), (3.0, 0.05)):
    collected = collected.merge(metrics.TrainMetrics.single_from_model_output(
        loss=jnp.float32(loss), learning_rate=jnp.float32(lr)))
  result = collected.compute()
  np.testing.assert_allclose(result['loss'], 2.0)
  np.testing.assert_allclose(result['learning_rate'], 0.05)
