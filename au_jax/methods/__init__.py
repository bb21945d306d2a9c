"""Training procedures, one module per paper, found by `config.method`.

A method module is plain functions (DESIGN.md, "Many methods, one trainer");
the trainer calls each hook it defines and its default otherwise:
  loss_fn(outputs, batch, config) -> (loss, scalars)      required
      outputs = model's (logits, aux); runs per device under pmap, so any
      batch statistic is reduced over `parallel.AXIS_NAME`.
  predict(logits, aux) -> [B, K] scores
      what evaluation scores (default: per-AU sigmoid probabilities).
  train_batches(config, data, seed) -> iterator with get_state/set_state
      the training stream (default `input_pipeline.train_loader`; IdenNet
      mixes AU frames with identity pairs).
  evaluate_split(predict_fn, batches, config) -> results
      scores a split (default `evaluate.evaluate`, per-AU F1/AUC).
  validation_scalars(results) -> {'val_best': ..., ...}
      what validation logs and what picks the best checkpoint (default:
      mean F1 or AUC, `config.best_metric`).
  test_results(evaluator, p_state, directory, extra) -> results
      the whole test step of a run (default: per-AU results under the
      validation-fitted thresholds and median window).
  test_extras(evaluator, p_state, validation) -> dict
      more test numbers beside the default ones (DRML: the fc9 SVM head).
  evaluate_fold(config, workdir, fold, results_by_key) -> results
      a fold's results from its runs (default: the runs stacked,
      `fold_evaluation.combine_runs`; AUNets: the multi-view cascade).
"""

import importlib
import types

import jax
import ml_collections


def get(config: ml_collections.ConfigDict) -> types.ModuleType:
  """The module `au_jax.methods.<config.method>`; a clear error if absent."""
  name = f'{__name__}.{config.method}'
  try:
    module = importlib.import_module(name)
  except ModuleNotFoundError as error:
    if error.name != name:
      raise
    raise ValueError(f'config.method={config.method!r}: no file '
                     f'au_jax/methods/{config.method}.py.') from error
  if not hasattr(module, 'loss_fn'):
    raise ValueError(f'{name} defines no loss_fn(outputs, batch, config).')
  return module


def default_predict(logits: jax.Array, aux) -> jax.Array:
  """Per-AU probabilities [B, C] from logits [B, C]."""
  del aux
  return jax.nn.sigmoid(logits.astype('float32'))
