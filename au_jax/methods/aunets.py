"""AUNets training: one binary (2-way softmax) VGG-16 per AU.

Paper: ../shared/papers/aunets_2017.txt sec. 3.2 ("a binary output softmax
layer predicting the presence or absence of the AU"), 3.2.2 and 4.1; solver
facts in ../shared/reference/architectures.md (Adam 1e-4, betas (0.5,
0.999), linear decay, early stop on validation F1: configs/aunets.py).

Each run trains one AU (config.one_model_per=('au',), config.aus = that
AU), so the loss is that AU's 2-way softmax cross-entropy averaged over the
frames with a known label (-1 and evaluation padding masked). The model
returns logit = z_present - z_absent, and
  -log softmax(z)[y] = -log sigmoid(+-(z_present - z_absent)),
so the loss is computed by the HydraNet loss of au_jax/methods/caud.py
(per-AU known-label mean, summed over the device axis); a run with several
AUs sums their means, i.e. it trains each output as if alone.
"""

from typing import Any

import jax

from au_jax.methods import caud


def loss_fn(outputs: tuple[jax.Array, dict[str, Any]],
            batch: dict[str, jax.Array],
            config: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
  """outputs: (logits [B, C] (C = 1 per AU model), aux); batch
  ['au_occurrence'] [B, C] in {1, 0, -1}. Returns (loss, scalars) as
  au_jax.methods.caud.loss_fn."""
  return caud.loss_fn(outputs, batch, config)


def evaluate_fold(config, workdir: str, fold,
                  results_by_key: dict[Any, Any]) -> dict[str, Any]:
  """The fold's test results: the per-AU models stacked
  (fold_evaluation.combine_runs), or with one_model_per=('view', 'au') the
  multi-view cascade (au_jax/cascade.py: view classifier, routing)."""
  # pylint: disable=g-import-not-at-top
  from au_jax import cascade
  from au_jax import fold_evaluation
  if 'view' in tuple(config.get('one_model_per') or ()):
    return cascade.evaluate_fold(config, workdir, fold, results_by_key)
  return fold_evaluation.combine_runs(config, workdir, fold, results_by_key)
