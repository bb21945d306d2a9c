"""Training procedures, one module per paper, found by `config.method`.

A method module is plain functions (DESIGN.md, "Many methods, one trainer"):
  loss_fn(outputs, batch, config) -> (loss, scalars)      required
      outputs = model's (logits, aux); runs per device under pmap, so any
      batch statistic is reduced over `parallel.AXIS_NAME`.
  predict(logits, aux) -> [B, K] scores                   optional
      what evaluation scores (default: per-AU sigmoid probabilities).
  evaluate_split(predict_fn, batches, config, **kw) -> results   optional
      scores a split (default: `evaluate.evaluate`, per-AU F1/AUC).
  BEST_METRIC: str                                         optional
      validation number that picks the best checkpoint (default from
      `config.best_metric`).
  train_batches(config, data, seed) -> iterator with get_state/set_state
      optional; default `input_pipeline.train_loader`.
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
