"""LP-Net training loss (Niu et al., CVPR 2019), eqs. 3, 5 and 6.

Paper: ../shared/papers/lpnet_cvpr2019.txt, sections 3.3 and 4.1.3.
  L_au = -(1/C) sum_j w_j [p_j log p^_j + (1 - p_j) log(1 - p^_j)]   (eq. 5)
  L_r  = |f_au . f_s|                                                 (eq. 3)
  L    = L_au + lambda L_r,  lambda = 1                               (eq. 6)
L_au is averaged over the examples of the (global) batch, L_r over the
examples that have usable landmarks (aux['shape_valid']).

Selective learning (Hand, Castillo & Chellappa, AAAI 2018; the paper's [16]):
for each AU, the batch's share of positives b is compared with a target
share t (`config.selective_learning_target`, 0.5 = balanced). Hand et al.
weight the under-represented class up and randomly leave samples of the
over-represented class out of the gradient until the batch matches t. Here
(named deviation) every sample of a class gets the expected weight of that
procedure, w_pos = t / b and w_neg = (1 - t) / (1 - b): deterministic, no
random numbers, and each AU's weights still sum to its number of known
labels. An AU whose batch has only positives or only negatives cannot be
balanced and keeps weight 1. Unknown labels (-1) have weight 0 and are not
counted. Counts are over the GLOBAL batch: under pmap they are summed over
the device axis (au_jax.parallel.AXIS_NAME), so D devices give the same
weights, loss and gradient as one device on the concatenated batch.

`config.selective_learning = False` gives the plain masked cross-entropy of
table 3's rows without SL.

Config fields read: selective_learning (bool), selective_learning_target
(float or one float per AU), orthogonality_weight (lambda).
"""

from typing import Any

import jax
import jax.numpy as jnp

from au_jax import parallel

Array = jax.Array


def _bound_axis(axis_name: str | None) -> str | None:
  """`axis_name` if this code runs under a pmap over it, else None."""
  if axis_name is None:
    return None
  try:
    jax.lax.axis_index(axis_name)
  except NameError:
    return None
  return axis_name


def _global_sum(x: Array, axis_name: str | None) -> Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def selective_learning_weights(labels: Array, target: Any = 0.5,
                               axis_name: str | None = None) -> Array:
  """Per-sample, per-AU balancing weights from the global batch.

  Args:
    labels: [B, C] int in {1, 0, -1 unknown} (this device's shard).
    target: the target share of positives t, a float or [C].
    axis_name: pmap axis over which the batch is split (None: one device).

  Returns:
    [B, C] float32: t / b where the label is 1, (1 - t) / (1 - b) where 0,
    0 where unknown; 1 for the known labels of an AU whose global batch has
    no positives or no negatives. b = positives / known labels of the AU in
    the global batch.
  """
  labels = jnp.asarray(labels)
  positive = (labels == 1).astype(jnp.float32)
  negative = (labels == 0).astype(jnp.float32)
  positives = _global_sum(positive.sum(axis=0), axis_name)  # [C]
  negatives = _global_sum(negative.sum(axis=0), axis_name)
  known = positives + negatives
  target = jnp.broadcast_to(jnp.asarray(target, jnp.float32),
                            positives.shape)
  both = (positives > 0) & (negatives > 0)
  # Guarded divisions: where a class is missing its weight is unused.
  positive_weight = jnp.where(
      both, target * known / jnp.maximum(positives, 1.0), 1.0)
  negative_weight = jnp.where(
      both, (1.0 - target) * known / jnp.maximum(negatives, 1.0), 1.0)
  return positive * positive_weight + negative * negative_weight


def au_loss(logits: Array, labels: Array, weights: Array) -> Array:
  """Eq. 5 summed over this shard's examples, divided by C.

  Args:
    logits: [B, C]; labels: [B, C] in {1, 0, -1}; weights: [B, C] (0 where
      a label is unknown).

  Returns:
    Scalar sum over examples of -(1/C) sum_j w_j [p log p^ + (1-p) log(1-p^)].
  """
  logits = logits.astype(jnp.float32)
  positive = (labels == 1).astype(jnp.float32)
  negative = (labels == 0).astype(jnp.float32)
  per_label = -(positive * jax.nn.log_sigmoid(logits)
                + negative * jax.nn.log_sigmoid(-logits))
  return (weights * per_label).sum() / logits.shape[1]


def orthogonality_loss(au_feature: Array, shape_feature: Array) -> Array:
  """Eq. 3 per example: |f_au . f_s|.

  Args:
    au_feature: [B, D]; shape_feature: [B, D].

  Returns:
    [B] float32.
  """
  if au_feature.shape != shape_feature.shape:
    raise ValueError(f'f_au {au_feature.shape} and f_s {shape_feature.shape} '
                     'must have the same shape [B, D].')
  return jnp.abs(jnp.sum(au_feature.astype(jnp.float32)
                         * shape_feature.astype(jnp.float32), axis=-1))


def loss_fn(outputs: tuple[Array, dict[str, Array]], batch: dict[str, Array],
            config: Any) -> tuple[Array, dict[str, Array]]:
  """L = L_au + lambda L_r (eq. 6) for this device's shard.

  The returned loss is this device's share: its average over the devices
  (the trainer's lax.pmean of loss and gradient) is the loss of the global
  batch. Scalars are global values already.

  Args:
    outputs: (logits [B, C], aux) from au_jax.models.lpnet.Model; aux needs
      'au_feature' and, when P-Net is on, 'shape_feature', 'shape_valid'.
    batch: 'au_occurrence' [B, C] in {1, 0, -1}; optional 'mask' [B]
      (False rows, i.e. padding, count as unknown and have no L_r).
    config: selective_learning, selective_learning_target,
      orthogonality_weight.

  Returns:
    (loss scalar, {'au_loss', 'orthogonality_loss', 'loss'}).
  """
  logits, aux = outputs
  labels = jnp.asarray(batch['au_occurrence'])
  if labels.shape != logits.shape:
    raise ValueError(f"batch['au_occurrence'] {labels.shape} does not match "
                     f'logits {logits.shape} ([B, C]).')
  axis_name = _bound_axis(parallel.AXIS_NAME)
  devices = _global_sum(jnp.float32(1.0), axis_name)
  row_mask = jnp.asarray(batch.get('mask', jnp.ones(labels.shape[:1], bool)))
  labels = jnp.where(row_mask[:, None], labels, -1)

  if config.selective_learning:
    weights = selective_learning_weights(
        labels, config.selective_learning_target, axis_name)
  else:
    weights = (labels >= 0).astype(jnp.float32)
  weights = jax.lax.stop_gradient(weights)
  # Global mean over examples: D * local sum / global count, so the pmean
  # over devices is the global mean.
  examples = _global_sum(jnp.float32(labels.shape[0]), axis_name)
  classification = devices * au_loss(logits, labels, weights) / examples

  if 'shape_feature' in aux:
    valid = aux['shape_valid'] * row_mask.astype(jnp.float32)
    per_example = orthogonality_loss(aux['au_feature'], aux['shape_feature'])
    num_valid = _global_sum(valid.sum(), axis_name)
    orthogonality = (devices * (valid * per_example).sum()
                     / jnp.maximum(num_valid, 1.0))
  else:  # Stem-Net or Stem+L-Net rows: no P-Net, no L_r.
    orthogonality = jnp.float32(0.0)
  loss = classification + config.orthogonality_weight * orthogonality

  def global_value(x):
    x = jax.lax.stop_gradient(x)
    return x if axis_name is None else jax.lax.pmean(x, axis_name)

  scalars = {'au_loss': global_value(classification),
             'orthogonality_loss': global_value(orthogonality),
             'loss': global_value(loss)}
  return loss, scalars
