"""Method parts the contract's loop calls: the `classify` method (loss by
hand, accuracy per class and group), post-processing (median smoothing per
video and view, regularised threshold tuning) and the fc9 linear SVM."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax import parallel
from au_jax import postprocess
from au_jax.methods import drml as drml_method
from au_jax.methods import classify


# ------------------------------------------------------------- classify


def _in_one_device_pmap(fn, *args):
  return jax.pmap(fn, axis_name=parallel.AXIS_NAME)(
      *[jax.tree_util.tree_map(lambda x: x[None], a) for a in args])


def test_classify_loss_by_hand():
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  batch = {'view': jnp.array([1, 3, 0])}  # view 0 (single view) unknown.
  config = ml_collections.ConfigDict({'classify_field': 'view'})
  loss, scalars = _in_one_device_pmap(
      lambda l, b: classify.loss_fn((l, {}), b, config), logits, batch)
  expected = (-np.log(np.exp(2) / (np.exp(2) + 2))
              - np.log(1 / (np.exp(1) + 2))) / 2
  assert float(loss[0]) == pytest.approx(expected, rel=1e-6)
  assert float(scalars['train_accuracy'][0]) == pytest.approx(0.5)


def test_accuracy_table_per_class_and_group():
  table = classify.accuracy_table(np.array([0, 0, 1, 1, -1]),
                                  np.array([0, 1, 1, 1, 0]),
                                  np.array([1, 2, 1, 2, 1]))
  assert table['accuracy'] == pytest.approx(75.0)
  assert table['per_class']['0'] == {'accuracy': 50.0, 'count': 2}
  assert table['per_group']['2']['accuracy'] == pytest.approx(50.0)


# ------------------------------------------------ post-processing and SVM


def test_median_smooth_never_crosses_views_of_one_video():
  # One sequence seen from two views, frames interleaved: view 1 is all 1
  # with a single 0 blip, view 2 all 0 with a single 1 blip.
  view = np.array([1, 2] * 5)
  frame = np.repeat(np.arange(5), 2)
  values = np.where(view == 1, 1, 0)[:, None]
  values[4, 0], values[5, 0] = 0, 1  # Frame 2 of each view flipped.
  subject = np.array(['S1'] * 10)
  sequence = np.array(['T1'] * 10)
  smoothed = postprocess.median_smooth(values, (subject, sequence, view), 3,
                                       frame)
  np.testing.assert_array_equal(smoothed[:, 0], np.where(view == 1, 1, 0))
  # Ignoring the view would mix them: the windows then see both streams.
  mixed = postprocess.median_smooth(values, (subject, sequence), 3, frame)
  assert not np.array_equal(mixed[:, 0], np.where(view == 1, 1, 0))


def test_tuned_thresholds_are_regularised():
  labels = np.array([[1, 1], [0, 1], [0, 0], [0, 0]] * 3)
  scores = np.array([[0.3, 0.8], [0.1, 0.6], [0.2, 0.2], [0.0, 0.1]] * 3)
  # AU 1 has 3 positives: below min_positives=4 it keeps 0.5.
  thresholds = postprocess.tune_thresholds(labels, scores, min_positives=4)
  assert thresholds[0] == 0.5
  assert 0.2 < thresholds[1] <= 0.6


def test_linear_svm_agrees_with_scikit_learn():
  sklearn_svm = pytest.importorskip('sklearn.svm')
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 5))
  y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 0.3
       + 0.3 * rng.normal(size=300) > 0).astype(int)
  w, b = drml_method.fit_linear_svm(x, y, c=1.0)
  reference = sklearn_svm.LinearSVC(C=1.0, loss='squared_hinge',
                                    intercept_scaling=100.0,
                                    max_iter=100000).fit(x, y)
  np.testing.assert_allclose(w, reference.coef_[0], rtol=0.02, atol=0.02)
  agree = np.mean(((x @ w + b) > 0) == reference.predict(x).astype(bool))
  assert agree > 0.99
