"""The shared trainer: one fold at a time, data-parallel in the pmap model.

`train_and_evaluate(config, workdir)` runs every fold in `config.folds`:
train on the fold's training subjects, keep the latest and the best (by
validation mean F1) checkpoints in `run_dir`, evaluate the best on the test
subjects, then write the cross-fold table. Models plug in through
`models.create(config)`; a model's extra losses arrive in `aux['loss']`.
"""

import functools
import os
import time
from typing import Any

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from au_jax import aus as aus_lib
from au_jax import checkpointing
from au_jax import evaluate
from au_jax import folds
from au_jax import input_pipeline
from au_jax import losses
from au_jax import metric_writers
from au_jax import models
from au_jax import parallel
from au_jax import visualize


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def create_learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Constant (DRML's Caffe solver) or step decay every `lr_decay_steps`."""
  if config.get('lr_decay_steps'):
    return optax.exponential_decay(
        config.learning_rate, transition_steps=config.lr_decay_steps,
        decay_rate=config.lr_decay_factor, staircase=True)
  return optax.constant_schedule(config.learning_rate)


def create_optimizer(
    config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD with momentum (DRML) or Adam, with Caffe-style L2 weight decay."""
  learning_rate = create_learning_rate(config)
  if config.optimizer == 'sgd':
    update = optax.sgd(learning_rate, momentum=config.momentum)
  elif config.optimizer == 'adam':
    update = optax.adam(learning_rate, b1=config.get('adam_b1', 0.9),
                        b2=config.get('adam_b2', 0.999))
  else:
    raise ValueError(f"config.optimizer must be 'sgd' or 'adam', got "
                     f'{config.optimizer!r}.')
  # Caffe adds weight_decay * w to the gradient before the solver update.
  return optax.chain(optax.add_decayed_weights(config.weight_decay), update)


def example_batch(config: ml_collections.ConfigDict,
                  batch_size: int = 1) -> dict[str, jnp.ndarray]:
  """A zero batch with the shapes the pipeline yields, for initialisation."""
  size = config.crop_size
  return {
      'image': jnp.zeros([batch_size, size, size, 3], jnp.float32),
      'landmarks': jnp.zeros([batch_size, 68, 2], jnp.float32),
      'au_occurrence': jnp.zeros([batch_size, len(config.aus)], jnp.int32),
  }


def create_train_state(config: ml_collections.ConfigDict, model: Any,
                       rng: jax.Array) -> TrainState:
  """Initialises parameters (and batch-norm statistics) on the host."""
  params_rng, dropout_rng = jax.random.split(rng)
  # Initialise without the pmap axis: batch-norm at init needs no devices.
  init_model = model.clone(axis_name=None) if hasattr(
      model, 'axis_name') else model
  variables = jax.jit(functools.partial(init_model.init, train=False))(
      {'params': params_rng, 'dropout': dropout_rng}, example_batch(config))
  return TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=create_optimizer(config))


def train_step(state: TrainState, batch: dict[str, jnp.ndarray],
               rng: jax.Array, config: ml_collections.ConfigDict
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One per-device SGD step; run under `parallel.pmap_step`.

  Gradients and the loss are averaged over devices with `lax.pmean`; batch
  norm computes its statistics over the whole global batch (the model's
  `axis_name`), so D devices take the same step as one device would on the
  concatenated batch.
  """
  rng = jax.random.fold_in(rng, state.step)
  rng = jax.random.fold_in(rng, jax.lax.axis_index(parallel.AXIS_NAME))

  def loss_fn(params):
    (logits, aux), updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch,
        train=True, mutable=['batch_stats'], rngs={'dropout': rng})
    loss = losses.sigmoid_cross_entropy(
        logits, batch['au_occurrence'], normalise=config.loss_normalise)
    extra = aux.get('loss', 0.0) if isinstance(aux, dict) else 0.0
    return loss + extra, (loss, updates)

  grads, (au_loss, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, parallel.AXIS_NAME)
  state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
  metrics = {
      'train_loss': jax.lax.pmean(au_loss, parallel.AXIS_NAME),
      'learning_rate': create_learning_rate(config)(state.step - 1),
  }
  return state, metrics


def eval_step(state: TrainState,
              batch: dict[str, jnp.ndarray]) -> jnp.ndarray:
  """Per-AU probabilities [B, C] with running batch-norm statistics."""
  logits, _ = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats}, batch,
      train=False)
  return jax.nn.sigmoid(logits.astype(jnp.float32))


def check_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors for values the rest of the code would trip on later."""
  aus_lib.check_aus(config.aus)
  aus_lib.label_indices(config.dataset, config.aus)
  folds.parse_folds(config.folds)
  devices = parallel.device_count()
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] <= 0 or config[field] % devices:
      raise ValueError(f'config.{field}={config[field]} must be a positive '
                       f'multiple of the {devices} local devices.')
  if config.crop_size > config.resize_size:
    raise ValueError(f'config.crop_size={config.crop_size} exceeds '
                     f'config.resize_size={config.resize_size}.')


def _predict_fn(p_eval_step, p_state):
  def predict(batch):
    return parallel.unshard(p_eval_step(p_state, parallel.shard(batch)))
  return predict


def _evaluate_split(config, data, split, p_eval_step, p_state,
                    max_frames=None, thresholds=None):
  return evaluate.evaluate(
      _predict_fn(p_eval_step, p_state),
      input_pipeline.eval_batches(config, data, split, max_frames),
      config.aus, threshold=config.threshold, thresholds=thresholds)


def train_fold(config: ml_collections.ConfigDict, workdir: str, fold: int,
               builder: Any = None) -> dict[str, Any]:
  """Trains (or resumes) one fold and returns its test results."""
  builder = builder or input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, fold)
  directory = checkpointing.run_dir(config, workdir, fold)
  os.makedirs(directory, exist_ok=True)

  model = models.create(config, axis_name=parallel.AXIS_NAME)
  rng = jax.random.fold_in(jax.random.key(config.seed), fold)
  init_rng, step_rng = jax.random.split(rng)
  state = create_train_state(config, model, init_rng)
  num_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  logging.info('%s: %s parameters', config.method, f'{num_params:,}')

  manager = checkpointing.create_manager(directory)
  loader = input_pipeline.train_loader(config, data, seed=config.seed + fold)
  iterator = iter(loader)
  start_step = 0
  restored = checkpointing.restore(manager, state, config)
  if restored is not None:
    state, data_state, start_step = restored
    if data_state:
      iterator.set_state(data_state['iterator'].encode())
    logging.info('Resumed fold %d from step %d in %s', fold, start_step,
                 directory)

  p_state = parallel.replicate(state)
  p_train_step = parallel.pmap_step(
      functools.partial(train_step, config=config))
  p_eval_step = parallel.pmap_step(eval_step, donate_state=False)
  p_rng = parallel.replicate(step_rng)
  has_validation = bool(data.subjects.validation)

  def save(step, metrics=None):
    checkpointing.save(
        manager, step, parallel.unreplicate(p_state),
        {'iterator': iterator.get_state().decode()}, config, metrics)

  with metric_writers.MetricWriter(directory) as writer:
    progress = tqdm.tqdm(
        total=config.num_train_steps, initial=start_step,
        desc=f'{config.method} fold {fold}', unit='step',
        disable=not config.get('progress_bar', True), dynamic_ncols=True)
    last_time, last_step = time.time(), start_step
    for step in range(start_step + 1, config.num_train_steps + 1):
      batch = parallel.shard(next(iterator))
      p_state, metrics = p_train_step(p_state, batch, p_rng)
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        # Fetching metrics also keeps pmap's queue short (see stack-notes).
        scalars = jax.tree_util.tree_map(lambda x: float(x[0]), metrics)
        now = time.time()
        scalars['images_per_second'] = (
            (step - last_step) * config.batch_size / max(now - last_time,
                                                          1e-9))
        last_time, last_step = now, step
        writer.write_scalars(step, scalars)
        progress.set_postfix(loss=f"{scalars['train_loss']:.4f}",
                             img_s=f"{scalars['images_per_second']:.1f}")
      progress.update(1)
      is_last = step == config.num_train_steps
      if has_validation and (step % config.eval_every_steps == 0 or is_last):
        p_state = parallel.sync_batch_stats(p_state)
        results = _evaluate_split(config, data, 'validation', p_eval_step,
                                  p_state, config.get('max_validation_frames'))
        val = {'val_mean_f1': results['mean']['f1'],
               'val_mean_auc': results['mean']['auc']}
        writer.write_scalars(step, val)
        logging.info('fold %d step %d: validation mean F1 %.1f', fold, step,
                     val['val_mean_f1'])
        save(step, {checkpointing.BEST_METRIC: val['val_mean_f1']})
      elif step % config.checkpoint_every_steps == 0 or is_last:
        p_state = parallel.sync_batch_stats(p_state)
        save(step)
    progress.close()

    # Test with the best checkpoint by validation F1, else the last one.
    best_step = manager.best_step() if has_validation else None
    if best_step is not None and best_step != manager.latest_step():
      state, _, _ = checkpointing.restore(
          manager, parallel.unreplicate(p_state), config, step=best_step)
      p_state = parallel.replicate(state)
    thresholds = None
    if config.get('tune_thresholds') and has_validation:
      val_results = _evaluate_split(config, data, 'validation', p_eval_step,
                                    p_state)
      thresholds = evaluate.tune_thresholds(
          val_results['labels'], val_results['probabilities'])
    results = _evaluate_split(config, data, 'test', p_eval_step, p_state,
                              thresholds=thresholds)
    results['fold'] = fold
    results['checkpoint_step'] = int(best_step or manager.latest_step() or 0)
    results['test_subjects'] = list(data.subjects.test)
    writer.write_scalars(config.num_train_steps,
                         {'test_mean_f1': results['mean']['f1']})
  manager.close()
  evaluate.write_results(results, directory, name='test_results')
  return results


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Trains and tests every fold of `config.folds`; writes the cross-fold
  table (JSON + Markdown + a per-AU F1 plot) under
  `workdir/<dataset>/<method>/` and prints it."""
  check_config(config)
  builder = input_pipeline.open_dataset(config)
  results_by_fold = {}
  for fold in folds.parse_folds(config.folds):
    results_by_fold[fold] = train_fold(config, workdir, fold, builder)
  table = evaluate.cross_fold(results_by_fold, config.aus)
  directory = os.path.dirname(checkpointing.run_dir(config, workdir, 1))
  json_path, md_path = evaluate.write_results(table, directory)
  visualize.plot_per_au_f1(table, config.aus,
                           os.path.join(directory, 'per_au_f1.png'))
  print(f'\n{config.method} on {config.dataset}/{config.dataset_config}, '
        f'folds {list(results_by_fold)}:')
  print(evaluate.markdown_table(table, config.aus))
  print(f'\nWritten {json_path} and {md_path}')
  return table
