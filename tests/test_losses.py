"""Tests of au_jax.losses against hand-computed numpy values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax import losses

jax.config.update('jax_disable_most_optimizations', True)

LOGITS = np.array([[2.0, -1.0, 0.5],
                   [-3.0, 0.0, 1.5]], np.float32)
LABELS = np.array([[1, 0, -1],
                   [0, -1, 1]], np.int8)


def _log_sigmoid(x):
  return -np.log1p(np.exp(-x))


def _hand_sum(pos_weight=(1.0, 1.0, 1.0)):
  # Known entries: (0,0) positive, (0,1) negative, (1,0) negative,
  # (1,2) positive; (0,2) and (1,1) are unknown and add nothing.
  return -(pos_weight[0] * _log_sigmoid(2.0) + _log_sigmoid(1.0)
           + _log_sigmoid(3.0) + pos_weight[2] * _log_sigmoid(1.5))


def test_batch_normalisation_divides_by_batch_size():
  loss = losses.sigmoid_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  np.testing.assert_allclose(loss, _hand_sum() / 2, rtol=1e-6)


def test_known_normalisation_divides_by_known_labels():
  loss = losses.sigmoid_cross_entropy(LOGITS, LABELS, normalise='known')
  np.testing.assert_allclose(loss, _hand_sum() / 4, rtol=1e-6)


def test_none_gives_per_example_sums():
  loss = losses.sigmoid_cross_entropy(LOGITS, LABELS, normalise='none')
  expected = [-(_log_sigmoid(2.0) + _log_sigmoid(1.0)),
              -(_log_sigmoid(3.0) + _log_sigmoid(1.5))]
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_unknown_labels_change_nothing():
  # Changing the logits of unknown entries must not change the loss or its
  # gradient there.
  other = LOGITS.copy()
  other[0, 2], other[1, 1] = 50.0, -50.0
  a = losses.sigmoid_cross_entropy(LOGITS, LABELS)
  b = losses.sigmoid_cross_entropy(other, LABELS)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  grad = jax.grad(losses.sigmoid_cross_entropy)(jnp.asarray(LOGITS), LABELS)
  assert grad[0, 2] == 0 and grad[1, 1] == 0
  # d/dx of -log sigmoid(x) / B at x=2 is -(1 - sigmoid(2)) / 2.
  np.testing.assert_allclose(grad[0, 0], -(1 - 1 / (1 + np.exp(-2.0))) / 2,
                             rtol=1e-5)


def test_all_unknown_is_zero():
  labels = -np.ones_like(LABELS)
  for normalise in ('batch', 'known'):
    assert float(losses.sigmoid_cross_entropy(LOGITS, labels,
                                              normalise)) == 0.0


def test_pos_weight():
  weights = np.array([3.0, 5.0, 0.5], np.float32)
  loss = losses.sigmoid_cross_entropy(LOGITS, LABELS, pos_weight=weights)
  np.testing.assert_allclose(loss, _hand_sum(weights) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match='pos_weight'):
    losses.sigmoid_cross_entropy(LOGITS, LABELS, pos_weight=weights[:2])


def test_stable_for_extreme_logits_and_jits():
  logits = jnp.array([[1e4, -1e4]], jnp.float32)
  labels = jnp.array([[0, 1]], jnp.int8)
  loss = jax.jit(losses.sigmoid_cross_entropy)(logits, labels)
  np.testing.assert_allclose(loss, 2e4, rtol=1e-6)
  assert np.isfinite(jax.grad(losses.sigmoid_cross_entropy)(logits,
                                                            labels)).all()


def test_bad_arguments():
  with pytest.raises(ValueError, match='normalise'):
    losses.sigmoid_cross_entropy(LOGITS, LABELS, normalise='mean')
  with pytest.raises(ValueError, match='must both be'):
    losses.sigmoid_cross_entropy(LOGITS, LABELS[:, :2])


def test_positive_weights():
  labels = np.array([[1, 0, 1, -1],
                     [0, 0, 1, -1],
                     [0, -1, 1, -1],
                     [0, 0, 1, 1]])
  # AU0: 3 negatives / 1 positive; AU1: no positives -> max; AU2: no
  # negatives -> 1; AU3: 0 negatives, 1 positive -> 1.
  np.testing.assert_allclose(
      losses.positive_weights(labels, max_weight=10.0), [3.0, 10.0, 1.0, 1.0])
