"""DRML's training procedure: the multi-label sigmoid loss, and the poster's
linear SVM head on fc9 (`test_extras`, with `config.svm_on_fc9`).

Paper: ../shared/papers/drml_poster.txt, "Multi-label loss" L(Y, Y^):
  L = -1/N sum_n sum_c {[Y_nc > 0] log Y^_nc + [Y_nc < 0] log(1 - Y^_nc)}
with unknown labels (au_jax: -1) adding nothing (au_jax/losses.py). The
authors' Caffe solver divides by the batch size: `config.loss_normalise`
'batch' (faithful default) or 'known'.
"""


import jax
import numpy as np
import scipy.optimize
from typing import Any
from typing import Sequence

from au_jax import evaluate
from au_jax import losses


def loss_fn(outputs: tuple[jax.Array, dict[str, Any]],
            batch: dict[str, jax.Array],
            config: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
  """outputs: (logits [B, C], aux); batch['au_occurrence'] [B, C] in
  {1, 0, -1}. Returns (loss, {'au_loss': loss})."""
  logits, _ = outputs
  loss = losses.sigmoid_cross_entropy(
      logits, batch['au_occurrence'],
      normalise=config.get('loss_normalise', 'batch'))
  return loss, {'au_loss': loss}


C_GRID = (0.001, 0.01, 0.1, 1.0)


def fit_linear_svm(features: np.ndarray, labels: np.ndarray,
                   c: float) -> tuple[np.ndarray, float]:
  """(w [D], b) of the squared-hinge SVM; labels [N] in {0, 1}."""
  x = np.asarray(features, np.float64)
  y = np.where(np.asarray(labels) > 0, 1.0, -1.0)

  def objective(theta):
    w, b = theta[:-1], theta[-1]
    margin = 1 - y * (x @ w + b)
    active = np.maximum(margin, 0)
    value = 0.5 * w @ w + c * np.sum(active ** 2)
    grad_scores = -2 * c * active * y
    return value, np.concatenate([w + x.T @ grad_scores,
                                  [grad_scores.sum()]])

  theta = scipy.optimize.minimize(
      objective, np.zeros(x.shape[1] + 1), jac=True, method='L-BFGS-B',
      options={'maxiter': 500}).x
  return theta[:-1], float(theta[-1])


def _f1(labels, predictions) -> float:
  tp = np.sum((labels == 1) & predictions)
  fp = np.sum((labels == 0) & predictions)
  fn = np.sum((labels == 1) & ~predictions)
  return float(2 * tp / max(2 * tp + fp + fn, 1))


def fit_per_au(train_features, train_labels, val_features, val_labels,
               c_grid: Sequence[float] = C_GRID):
  """Per-AU SVMs with C chosen on validation F1.

  Args:
    train_features: [N, D]; train_labels: [N, C] in {1, 0, -1}.
    val_features: [M, D]; val_labels: [M, C].

  Returns:
    A dict with 'mean' [D], 'scale' [D] (standardisation), 'weights' [D, C],
    'bias' [C] and 'c' [C] (the chosen C of each AU).
  """
  mean = train_features.mean(0)
  scale = train_features.std(0) + 1e-6
  xt = (train_features - mean) / scale
  xv = (val_features - mean) / scale
  num_aus = train_labels.shape[1]
  weights = np.zeros([xt.shape[1], num_aus])
  bias = np.zeros([num_aus])
  chosen = np.zeros([num_aus])
  for au in range(num_aus):
    known = train_labels[:, au] >= 0
    y = train_labels[known, au]
    if y.min() == y.max():  # One class only: a constant decision.
      bias[au] = 1.0 if y[0] == 1 else -1.0
      chosen[au] = np.nan
      continue
    best = None
    for c in c_grid:
      w, b = fit_linear_svm(xt[known], y, c)
      score = _f1(val_labels[:, au], (xv @ w + b) > 0)
      if best is None or score > best[0]:
        best = (score, w, b, c)
    _, weights[:, au], bias[au], chosen[au] = best
  return {'mean': mean, 'scale': scale, 'weights': weights, 'bias': bias,
          'c': chosen}


def decision(model: dict, features: np.ndarray) -> np.ndarray:
  """[N, C] SVM scores; positive where > 0."""
  return ((features - model['mean']) / model['scale']) @ model['weights'] + (
      model['bias'])


def test_extras(evaluator: Any, p_state: Any,
                validation: dict[str, Any]) -> dict[str, Any]:
  """With `config.svm_on_fc9`: the poster's head, linear SVMs on fc9 of
  training-subject frames (an evenly spaced subset), C per AU chosen on
  validation, scored on the test split ({'svm': per-AU and mean F1, C})."""
  del validation  # The SVM's C is chosen on validation features below.
  config = evaluator.config
  if not config.get('svm_on_fc9'):
    return {}
  limit = config.get('svm_max_train_frames', 3000)
  train_x, train_y = evaluator.features(p_state, 'train', limit)
  val_x, val_y = evaluator.features(p_state, 'validation')
  model = fit_per_au(train_x, train_y, val_x, val_y)
  test_x, test_y = evaluator.features(p_state, 'test')
  predictions = decision(model, test_x) > 0
  if evaluator.test_columns is not None:
    predictions = predictions[:, evaluator.test_columns]
  result = evaluate.compute_metrics(test_y, predictions.astype(np.float64),
                                    evaluator.test_aus, 0.5)
  return {'svm': {'per_au': result['per_au'], 'mean': result['mean'],
                  'c': model['c'].tolist()}}
