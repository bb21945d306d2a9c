"""DRML's training procedure: the multi-label sigmoid loss, nothing else.

Paper: ../shared/papers/drml_poster.txt, "Multi-label loss" L(Y, Y^):
  L = -1/N sum_n sum_c {[Y_nc > 0] log Y^_nc + [Y_nc < 0] log(1 - Y^_nc)}
with unknown labels (au_jax: -1) adding nothing (au_jax/losses.py). The
authors' Caffe solver divides by the batch size: `config.loss_normalise`
'batch' (faithful default) or 'known'.
"""

from typing import Any

import jax

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
