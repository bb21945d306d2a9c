"""Multi-label AU losses with unknown labels masked out.

Labels follow the au_jax record convention: 1 = AU present, 0 = absent,
-1 = not coded (unknown). Unknown labels contribute nothing to any loss here,
never a "negative" term (DESIGN.md, Conventions).
"""

import jax
import jax.numpy as jnp

NORMALISATIONS = ('batch', 'known', 'none')


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array,
                          normalise: str = 'batch',
                          pos_weight: jax.Array | None = None) -> jax.Array:
  """DRML's multi-label sigmoid cross-entropy, unknown labels ignored.

  DRML (drml_poster.txt, "Multi-label loss"):
    L(Y, Yhat) = -1/N sum_n sum_c {[Y_nc > 0] log Yhat_nc
                                   + [Y_nc < 0] log(1 - Yhat_nc)}
  DRML codes targets as +1 present, -1 absent and 0 not labelled; au_jax
  records code 1 present, 0 absent, -1 unknown, so here the positive term is
  taken where `labels == 1`, the negative term where `labels == 0`, and
  `labels == -1` adds nothing. log(sigmoid(x)) is computed as
  `jax.nn.log_sigmoid(x)` and log(1 - sigmoid(x)) as `log_sigmoid(-x)`, which
  stay finite for any logit.

  Args:
    logits: [B, C] pre-sigmoid scores.
    labels: [B, C] int in {1, 0, -1}.
    normalise: 'batch' divides the sum by B (the DRML paper and its released
      Caffe solver: faithful default); 'known' divides by the number of known
      labels in the batch (0 when there are none); 'none' returns the
      per-example sums [B] (e.g. for a masked evaluation loss).
    pos_weight: optional [C] weight on each AU's positive term (an inverse
      frequency weighting used by many later AU papers; not in DRML). None
      (default) is the faithful, unweighted loss.

  Returns:
    A scalar loss, or [B] per-example sums when `normalise='none'`.
  """
  if normalise not in NORMALISATIONS:
    raise ValueError(
        f'normalise={normalise!r}: expected one of {NORMALISATIONS}.')
  if logits.ndim != 2 or logits.shape != labels.shape:
    raise ValueError(
        f'logits {logits.shape} and labels {labels.shape} must both be [B, C].')
  logits = logits.astype(jnp.float32)
  positive = (labels == 1).astype(jnp.float32)
  negative = (labels == 0).astype(jnp.float32)
  positive_term = positive * jax.nn.log_sigmoid(logits)
  if pos_weight is not None:
    pos_weight = jnp.asarray(pos_weight, jnp.float32)
    if pos_weight.shape != logits.shape[1:]:
      raise ValueError(
          f'pos_weight has shape {pos_weight.shape}; expected '
          f'[{logits.shape[1]}] (one weight per AU).')
    positive_term = positive_term * pos_weight
  per_label = -(positive_term + negative * jax.nn.log_sigmoid(-logits))
  per_example = per_label.sum(axis=1)
  if normalise == 'none':
    return per_example
  total = per_example.sum()
  if normalise == 'batch':
    return total / logits.shape[0]
  num_known = (positive + negative).sum()
  # All labels unknown -> the sum is 0; dividing by max(n, 1) keeps it 0.
  return total / jnp.maximum(num_known, 1.0)


def positive_weights(labels, max_weight: float = 100.0) -> jax.Array:
  """Per-AU inverse-frequency positive weights: negatives / positives.

  The usual choice for `pos_weight` (it balances each AU's positive and
  negative terms); clipped to `max_weight` so that a rare AU does not dominate
  and an AU with no positives gets `max_weight`; an AU with no negatives gets
  1 (a weight of 0 would silence its loss).

  Args:
    labels: [N, C] int in {1, 0, -1} (unknown labels are not counted).
    max_weight: upper bound of a weight.

  Returns:
    [C] float32 weights.
  """
  labels = jnp.asarray(labels)
  positives = (labels == 1).sum(axis=0).astype(jnp.float32)
  negatives = (labels == 0).sum(axis=0).astype(jnp.float32)
  ratio = negatives / jnp.maximum(positives, 1.0)
  ratio = jnp.where(positives > 0, ratio, max_weight)
  ratio = jnp.where(negatives > 0, ratio, 1.0)
  return jnp.clip(ratio, 0.0, max_weight)
