"""CAUD / HydraNet training: one binary classifier per AU on a frozen trunk.

Papers: ../shared/papers/caud_thesis.txt sec. 4.2 (each AU a binary
classification of the whole image, trained in isolation on the frozen
EmoNet encoder) and ../shared/papers/aunets_2017.txt sec. 3.2.1.

Loss: each AU's head is a 2-way softmax (au_jax/models/caud.py) whose
cross-entropy equals the sigmoid cross-entropy of the returned logit
z_present - z_absent. Per AU it is averaged over the frames whose label is
known (-1 unknown masked, as Caffe's SoftmaxWithLoss with an ignore label
normalises by the valid count), and the AUs' means are summed:

  L = sum_c (1 / |K_c|) sum_{n in K_c} CE(logit_nc, y_nc),
  K_c = {n: y_nc != -1}

Summing per-AU means (rather than one mean over all labels) keeps each
head's gradient what it would be if that AU were trained alone, which the
thesis does; with the encoder frozen, one joint run of all heads is then the
same as C isolated runs. The counts |K_c| are summed over the device axis so
D devices compute the loss of the concatenated batch. Rows with
batch['mask'] False (evaluation padding) count as unknown.

Reported F1: the thesis' "F1-frame" (sec. 5.1.3) "considers the optimal
regime on the precision and recall curve": each AU's F1 at its best
threshold on the test frames. With config.thesis_f1 the test results carry
it ('f1_frame_thesis', `f1_at_best_threshold`) beside the F1 at 0.5 that
every method reports; it picks the threshold on the test labels, so it is
an upper bound, not a rule a deployed model could use.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from au_jax import metrics
from au_jax import parallel

THESIS_F1_LABEL = ('F1-frame as the thesis reports it: each AU at its best '
                   'threshold on the test frames (an upper bound); F1 at 0.5 '
                   "is the results' f1")


def per_au_cross_entropy(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None,
    axis_name: str = parallel.AXIS_NAME
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Sum over AUs of each AU's mean binary cross-entropy over known labels.

  Must run where `axis_name` is bound (pmap, or vmap with axis_name).

  Args:
    logits: [B, C] logits of "AU present" (for a 2-way softmax:
      z_present - z_absent).
    labels: [B, C] int in {1, 0, -1 unknown}.
    mask: optional [B] bool; False rows count as unknown.
    axis_name: device axis over which label counts are summed.

  Returns:
    (loss to differentiate on this device, global loss, per-AU global mean
    cross-entropies [C]). The first is the second times the device count,
    because the trainer averages per-device gradients: the mean over devices
    of the per-device gradients is then the gradient of the global loss. An
    AU without known labels in the global batch contributes 0.
  """
  if logits.ndim != 2 or logits.shape != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} must '
                     'both be [B, C].')
  logits = logits.astype(jnp.float32)
  known = labels >= 0
  if mask is not None:
    known = known & mask.astype(bool)[:, None]
  # -log sigmoid(x) for present, -log(1 - sigmoid(x)) for absent.
  cross_entropy = -jnp.where(labels == 1, jax.nn.log_sigmoid(logits),
                             jax.nn.log_sigmoid(-logits))
  local_sum = jnp.where(known, cross_entropy, 0.0).sum(axis=0)
  global_sum = jax.lax.psum(local_sum, axis_name)
  count = jnp.maximum(jax.lax.psum(known.sum(axis=0), axis_name), 1)
  device_count = jax.lax.psum(1, axis_name)
  per_au = global_sum / count
  device_loss = (local_sum / count).sum() * device_count
  return device_loss, per_au.sum(), per_au


def loss_fn(outputs: tuple[jax.Array, dict[str, Any]],
            batch: dict[str, jax.Array],
            config: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
  """outputs: (logits [B, C], aux); batch['au_occurrence'] [B, C] in
  {1, 0, -1}. Returns (loss, {'au_loss', 'au_loss_<nn>' per AU of
  config.aus})."""
  logits, _ = outputs
  if logits.shape[1] != len(config.aus):
    raise ValueError(f'{logits.shape[1]} logits per frame but config.aus has '
                     f'{len(config.aus)} AUs: {tuple(config.aus)}.')
  loss, global_loss, per_au = per_au_cross_entropy(
      logits, batch['au_occurrence'], batch.get('mask'))
  scalars = {'au_loss': global_loss}
  for index, au in enumerate(config.aus):
    scalars[f'au_loss_{int(au):02d}'] = per_au[index]
  return loss, scalars


def f1_at_best_threshold(labels: np.ndarray,
                         probabilities: np.ndarray) -> np.ndarray:
  """[C] each AU's highest F1 over every threshold (predict score >= t).

  labels: [N, C] in {1, 0, -1 unknown}; probabilities: [N, C]. Unknown
  frames are left out; an AU without positives scores 0 (as
  metrics.f1_frame).
  """
  best = []
  for positive, score in metrics.known_columns(labels, probabilities):
    order = np.argsort(-score, kind='stable')
    score, positive = score[order], positive[order]
    # Cut after the last frame of each run of equal scores: t = that score.
    last = np.r_[score[1:] != score[:-1], True] if score.size else []
    tp = np.cumsum(positive)[last]
    predicted = np.arange(1, score.size + 1)[last]
    fp, fn = predicted - tp, positive.sum() - tp
    f1 = metrics.f1_from_counts(tp, fp, fn)
    best.append(float(f1.max()) if f1.size else 0.0)
  return np.asarray(best)


def test_extras(evaluator: Any, p_state: Any,
                validation: dict[str, Any]) -> dict[str, Any]:
  """With config.thesis_f1: {'f1_frame_thesis': per-AU and mean F1 at each
  AU's best test threshold, and its label} (module docstring)."""
  del validation  # The threshold is the test curve's best, by definition.
  if not evaluator.config.get('thesis_f1'):
    return {}
  test = evaluator.split_results(p_state, 'test')
  values = f1_at_best_threshold(test['labels'], test['probabilities'])
  return {'f1_frame_thesis': {
      'per_au': {str(au): float(v) for au, v in zip(evaluator.test_aus,
                                                    values)},
      'mean': float(np.mean(values)) if values.size else 0.0,
      'label': THESIS_F1_LABEL}}
