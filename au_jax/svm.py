"""A linear SVM per AU on fixed features (DRML's poster: SVM on fc9).

DRML's poster predicts AUs with a linear SVM trained on the fc9 features of
the trained network. Here: per AU, an L2-regularised squared-hinge linear
SVM (the LIBLINEAR default primal problem)

  min_w,b  1/2 |w|^2 + C sum_i max(0, 1 - y_i (w . x_i + b))^2,

solved with scipy's L-BFGS on standardised features; unknown labels (-1)
are left out; C is chosen per AU on validation frames by F1.
"""

from typing import Sequence

import numpy as np
import scipy.optimize

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
