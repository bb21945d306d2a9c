"""The shared trainer: one loop for every method, data-parallel in pmap.

`train_and_evaluate(config, workdir)` expands the config into runs
(`runs.plan`: per fold, and per view / AU / stage where the method asks),
trains each run with the same loop (forward, the method's `loss_fn`,
gradient, update; evaluation and checkpoints), evaluates every fold on its
test subjects and writes the cross-fold table. A paper plugs in through
`models.create(config)` and `methods.get(config)` (DESIGN.md, "Many methods,
one trainer").
"""

import contextlib
import functools
import os
import shutil
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

from au_jax.data import cache
from au_jax import checkpointing
from au_jax import config_checks
from au_jax.data import device_transforms
from au_jax import distributed
from au_jax import fold_evaluation
from au_jax.data import folds
from au_jax import init_from
from au_jax.data import input_pipeline
from au_jax.data import records
from au_jax import methods
from au_jax import metric_writers
from au_jax import models
from au_jax import optim
from au_jax import parallel
from au_jax import runlock
from au_jax import runs
from au_jax import weights

class TrainState(train_state.TrainState):
  batch_stats: Any = None


def example_batch(config: ml_collections.ConfigDict,
                  batch_size: int = 1) -> dict[str, jnp.ndarray]:
  """A zero batch with the shapes the pipeline yields, for initialisation."""
  size = config.crop_size
  batch = {
      'image': jnp.zeros([batch_size, size, size, 3], jnp.float32),
      'landmarks': jnp.zeros([batch_size, 68, 2], jnp.float32),
      'au_occurrence': jnp.zeros([batch_size, len(config.aus)], jnp.int32),
  }
  if config.get('flow'):
    batch['flow'] = jnp.zeros([batch_size, size, size, 3], jnp.float32)
  return batch


def create_train_state(config: ml_collections.ConfigDict, model: Any,
                       rng: jax.Array) -> TrainState:
  """Initialises parameters (and batch-norm statistics) on the host."""
  params_rng, dropout_rng = jax.random.split(rng)
  # Initialise without the pmap axis: batch-norm at init needs no devices.
  init_model = model.clone(axis_name=None) if hasattr(
      model, 'axis_name') else model
  variables = jax.jit(functools.partial(init_model.init, train=False))(
      {'params': params_rng, 'dropout': dropout_rng}, example_batch(config))
  params = variables['params']
  return TrainState.create(
      apply_fn=model.apply, params=params,
      batch_stats=variables.get('batch_stats', {}),
      tx=optim.create_optimizer(config, params))


def train_step(state: TrainState, batch: dict[str, jnp.ndarray],
               rng: jax.Array, config: ml_collections.ConfigDict,
               loss_fn: Any = None, trainable: Any = None
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One per-device step; run under `parallel.pmap_step`.

  Gradients are averaged over devices with `lax.pmean`; batch norm computes
  its statistics over the whole global batch (the model's `axis_name`), so
  D devices take the same step as one device would on the concatenated
  batch. Frozen parameters (`trainable` False) pass through
  `stop_gradient`, so no weight gradient is computed for them.
  """
  loss_fn = loss_fn or methods.get(config).loss_fn
  # Random draws (crop, mirror, dropout) use keys no device index enters:
  # each is made for the global batch and each device takes its rows
  # (parallel.global_rows), so P processes x D devices train as 1 x 1.
  if batch['image'].dtype == jnp.uint8:  # Host sent resized faces only.
    batch = device_transforms.train_preprocess(
        batch, device_transforms.augmentation_key(rng, state.step), config)
  # The 0 stands where a device index used to be folded in, so one-device
  # runs draw what they always drew.
  rng = jax.random.fold_in(jax.random.fold_in(rng, state.step), 0)

  def compute_loss(params):
    if trainable is not None:
      params = optim.stop_frozen_gradients(params, trainable)
    outputs, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch,
        train=True, mutable=['batch_stats'], rngs={'dropout': rng})
    loss, scalars = loss_fn(outputs, batch, config)
    return loss, (scalars, updates)

  grads, (scalars, updates) = jax.grad(compute_loss, has_aux=True)(
      state.params)
  grads = jax.lax.pmean(grads, parallel.AXIS_NAME)
  state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
  scalars = jax.lax.pmean(scalars, parallel.AXIS_NAME)
  first = next(iter(scalars.values()))
  metrics = {
      'train_loss': scalars.get('au_loss', first),
      **scalars,
      'grad_norm': optax.global_norm(grads),
      'learning_rate': optim.create_learning_rate(config)(state.step - 1),
  }
  return state, metrics


def check_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors, before any work starts, for values that would fail late:
  every field's range (config_checks.py), then the run plan and method."""
  # The global batch is split over every process's devices.
  config_checks.check_config(config, jax.device_count())
  if jax.process_count() > 1 and (config.get('cache') or getattr(
      methods.get(config), 'train_batches', None)):
    raise ValueError(
        f'{jax.process_count()}-process training reads batches through '
        'input_pipeline.train_loader only; config.cache and methods with '
        'their own train_batches (IdenNet) are single-process for now: '
        'unset config.cache or run one process.')
  runs.plan(config)  # Folds, one_model_per, stage names.
  methods.get(config)


class _NoWriter:
  """Stands in for MetricWriter on processes other than 0."""

  def write_scalars(self, step, scalars) -> None:
    del step, scalars

  def __enter__(self):
    return self

  def __exit__(self, *unused_exc) -> None:
    pass


def _fetch(metrics: dict[str, Any]) -> dict[str, float]:
  return jax.tree_util.tree_map(lambda x: float(x[0]), metrics)


def _first_non_finite(pending: list[tuple[int, Any]]) -> None:
  """Raises NonFiniteError at the first step whose loss or gradient norm is
  nan/inf (the step's metrics were computed anyway: no extra device work)."""
  for step, metrics in pending:
    values = _fetch(metrics)
    for name in ('train_loss', 'grad_norm') + tuple(sorted(values)):
      if not np.isfinite(values[name]):
        raise checkpointing.NonFiniteError(
            f'Training diverged at step {step}: {name} = {values[name]}. '
            'Stopped; the last finite checkpoint is kept and no results '
            'were written (lower config.learning_rate?).')


def train_run(config: ml_collections.ConfigDict, workdir: str,
              key: runs.RunKey, builder: Any = None) -> dict[str, Any]:
  """Trains (or resumes) run `key` and returns its test results."""
  builder = builder or input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, key.fold)
  # Faults found before any work: a damaged record file of any subject the
  # run reads, a run directory that cannot be written.
  records.check_record_files(builder, data.subjects.train
                             + data.subjects.validation + data.subjects.test)
  directory = runs.run_dir(config, workdir, key)
  checkpointing.check_writable(directory)
  if jax.process_count() == 1:
    with runlock.RunLock(directory):
      return _train_run_locked(config, workdir, key, builder, data,
                               directory)
  # Multi-process: process 0 holds the lock for the whole job, and every
  # process learns whether it got it (none may go on alone into pmap).
  with contextlib.ExitStack() as stack:
    error = None
    if distributed.is_primary():
      try:
        stack.enter_context(runlock.RunLock(directory))
      except runlock.RunLockedError as locked:
        error = locked
    if not distributed.all_agree(error is None):
      raise error or runlock.RunLockedError(
          f'{directory}: process 0 of this job could not lock the run '
          'directory (its log names the owner).')
    return _train_run_locked(config, workdir, key, builder, data, directory)


def _train_run_locked(config, workdir, key, builder, data, directory):
  """The run's steps: its start state, its batches, the loop, the test."""
  meta = checkpointing.fingerprint(config,
                                   checkpointing.data_version(builder))
  if config.get('keep_weights_only') and checkpointing.finished_run(
      directory, meta, config.num_train_steps):
    logging.info('%s finished earlier (weights only): not trained again; '
                 'its test results are read from %s', key, directory)
    return checkpointing.read_test_results(directory)
  method = methods.get(config)
  fold_seed = key.fold if isinstance(key.fold, int) else 0
  rng = jax.random.fold_in(jax.random.key(config.seed), fold_seed)
  init_rng, step_rng = jax.random.split(rng)
  state, trainable = _initial_state(config, key, init_rng)
  checkpointing.write_config(config, directory)
  manager = checkpointing.create_manager(directory)
  iterator = _train_batches(config, method, data, config.seed + fold_seed)
  state, start_step = _start_state(config, workdir, key, directory, state,
                                   manager, meta, iterator)
  evaluator = fold_evaluation.Evaluator(config, data, method)
  has_validation = bool(data.subjects.validation) or bool(data.holdout)
  with (metric_writers.MetricWriter(directory, start_step=start_step)
        if distributed.is_primary() else _NoWriter()) as writer:
    p_state = _train_loop(config, key, method, trainable, state, start_step,
                          step_rng, iterator, manager, meta, evaluator,
                          writer, has_validation)
    results, p_state = _final_evaluation(
        config, key, data, directory, manager, meta, evaluator, p_state,
        has_validation)
    writer.write_scalars(config.num_train_steps,
                         {'test_' + k: v
                          for k, v in results.get('mean', {}).items()
                          if isinstance(v, float)})
  manager.close()
  if config.get('keep_weights_only'):
    _keep_weights_only(config, key, directory, p_state, results, meta)
  return results


def _initial_state(config, key, init_rng) -> tuple[TrainState, Any]:
  """A fresh TrainState and the mask of its trainable parameters."""
  model = models.create(config, axis_name=parallel.AXIS_NAME)
  state = create_train_state(config, model, init_rng)
  trainable = optim.trainable_mask(config, state.params)
  logging.info('%s %s: %s parameters, %s trainable', config.method, key,
               f'{optim.count_parameters(state.params):,}',
               f'{optim.count_parameters(state.params, trainable):,}')
  return state, trainable


def _train_batches(config, method, data, seed) -> parallel.Prefetcher:
  """The run's training batches, sharded onto the devices: the method's own
  stream (`train_batches`), the decoded split held in memory
  (`config.cache`), or the grain loader."""
  method_batches = getattr(method, 'train_batches', None)
  if config.get('cache'):
    # The decoded training split held in memory: no per-step host work.
    loader = cache.train_iterator(config, data, seed)
  elif method_batches is not None:
    loader = method_batches(config, data, seed)
  else:
    loader = input_pipeline.train_loader(config, data, seed=seed)
  return parallel.Prefetcher(iter(loader), config.get('prefetch_batches', 2))


def _start_state(config, workdir, key, directory, state, manager, meta,
                 iterator) -> tuple[TrainState, int]:
  """Where the run starts: its own latest checkpoint (data position
  included), else the run `config.init_from` names, else foreign weights
  (`config.imagenet_weights`: torchvision-named ResNet or VGG tensors),
  else the fresh state. Returns (state,
  start step)."""
  restored = checkpointing.restore(manager, state, meta)
  if restored is not None:
    state, data_state, start_step = restored
    position = checkpointing.iterator_state(
        data_state, jax.process_index(), jax.process_count())
    if position is not None:
      iterator.set_state(position.encode())
    logging.info('Resumed %s from step %d in %s', key, start_step, directory)
    return state, start_step
  if config.get('init_from'):
    variables, report = init_from.load_init_from(
        config, workdir, {'params': state.params,
                          'batch_stats': state.batch_stats})
    logging.info('%s starts from %s (step %d): %d tensors loaded; not in the '
                 'source: %s; source tensors unused: %d', key,
                 report['source'], report['step'], len(report['loaded']),
                 report['not_in_source'], len(report['unused_source']))
    fold_evaluation.write_json(os.path.join(directory, 'init_from.json'),
                               report)
    return state.replace(params=variables['params'],
                         batch_stats=variables['batch_stats'] or {}), 0
  if config.get('imagenet_weights'):
    # Starting weights from a .npz/.safetensors file (au_jax/weights.py):
    # torchvision ResNet (batch-norm statistics included) or VGG.
    variables, report = weights.initial_variables(
        config, {'params': state.params, 'batch_stats': state.batch_stats})
    logging.info('%s starts from %s (%s %s): %d tensors loaded', key,
                 report['source'], report['layout'], report['architecture'],
                 len(report['loaded']))
    fold_evaluation.write_json(
        os.path.join(directory, 'imagenet_weights.json'), report)
    return state.replace(
        params=jax.tree.map(jnp.asarray, variables['params']),
        batch_stats=jax.tree.map(jnp.asarray, variables['batch_stats'])), 0
  return state, 0


def _train_loop(config, key, method, trainable, state, start_step, step_rng,
                iterator, manager, meta, evaluator, writer, has_validation):
  """Steps start_step + 1 .. num_train_steps: logs every log_every_steps,
  validates (and saves, tracking the best) every eval_every_steps, saves
  every checkpoint_every_steps. Returns the replicated final state."""
  p_state = parallel.replicate(state)
  p_train_step = parallel.pmap_step(functools.partial(
      train_step, config=config, loss_fn=method.loss_fn,
      trainable=trainable))
  p_rng = parallel.replicate(step_rng)

  def save(step, metrics=None):
    # Every process's data position (each reads its own shard).
    positions = distributed.allgather_text(iterator.get_state().decode())
    checkpointing.save(
        manager, step, parallel.unreplicate(p_state),
        checkpointing.data_state(positions), meta, metrics)

  progress = tqdm.tqdm(
      total=config.num_train_steps, initial=start_step,
      desc=f'{config.method} {key}', unit='step',
      disable=not (config.get('progress_bar', True)
                   and distributed.is_primary()), dynamic_ncols=True)
  last_time, last_step, pending = time.time(), start_step, []
  for step in range(start_step + 1, config.num_train_steps + 1):
    batch = next(iterator)  # Sharded and already on the devices.
    p_state, metrics = p_train_step(p_state, batch, p_rng)
    pending.append((step, metrics))
    is_last = step == config.num_train_steps
    if step % config.log_every_steps == 0 or is_last:
      # Fetching metrics also keeps pmap's queue short (see stack-notes).
      _first_non_finite(pending)
      pending = []
      scalars = _fetch(metrics)
      now = time.time()
      scalars['images_per_second'] = (
          (step - last_step) * config.batch_size / max(now - last_time,
                                                        1e-9))
      last_time, last_step = now, step
      writer.write_scalars(step, scalars)
      progress.set_postfix(loss=f"{scalars['train_loss']:.4f}",
                           img_s=f"{scalars['images_per_second']:.1f}")
    progress.update(1)
    if has_validation and (step % config.eval_every_steps == 0 or is_last):
      _first_non_finite(pending)
      pending = []
      p_state = parallel.sync_batch_stats(p_state)
      val = evaluator.validation_scalars(p_state)
      writer.write_scalars(step, val)
      logging.info('%s step %d: %s', key, step, val)
      save(step, {checkpointing.BEST_METRIC: val['val_best']})
    elif step % config.checkpoint_every_steps == 0 or is_last:
      _first_non_finite(pending)
      pending = []
      p_state = parallel.sync_batch_stats(p_state)
      save(step)
  progress.close()
  return p_state


def _final_evaluation(config, key, data, directory, manager, meta,
                      evaluator, p_state, has_validation
                      ) -> tuple[dict[str, Any], Any]:
  """The test split with the best checkpoint by validation (else the
  last one); results written under the run directory. Returns (results,
  the replicated state tested)."""
  best_step = manager.best_step() if has_validation else None
  if best_step is not None and best_step != manager.latest_step():
    state, _, _ = checkpointing.restore(
        manager, parallel.unreplicate(p_state), meta, step=best_step)
    p_state = parallel.replicate(state)
  results = evaluator.test_results(p_state, directory, {
      'run': str(key),
      'checkpoint_step': int(best_step or manager.latest_step() or 0),
      'test_subjects': list(data.subjects.test),
      'validation_subjects': list(data.subjects.validation),
      'fold_protocol': folds.config_protocol(config).as_dict()})
  return results, p_state


def _keep_weights_only(config, key, directory, p_state, results, meta):
  """A finished run keeps only its tested weights (checkpointing.py)."""
  checkpointing.save_weights_only(
      directory, parallel.unreplicate(p_state),
      results.get('checkpoint_step', config.num_train_steps), meta,
      config.num_train_steps)
  freed = checkpointing.drop_full_checkpoints(directory)
  logging.info('%s finished: best weights kept, %.2f GB of full '
               'checkpoints deleted', key, freed / 1e9)


def train_fold(config: ml_collections.ConfigDict, workdir: str,
               fold: int | str, builder: Any = None) -> dict[str, Any]:
  """Trains every run of `fold` (views, AUs, stages) and returns the fold's
  test results (the method's `evaluate_fold`, else the last stage's runs,
  stacked over per-AU/per-view models)."""
  builder = builder or input_pipeline.open_dataset(config)
  results = {}
  for key in runs.plan(config):
    if key.fold != fold:
      continue
    results[key] = train_run(runs.run_config(config, key), workdir, key,
                             builder)
  evaluate_fold = getattr(methods.get(config), 'evaluate_fold',
                          fold_evaluation.combine_runs)
  return evaluate_fold(config, workdir, fold, results)


def plan_disk_bytes(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Disk a run plan needs, from the abstract train state of its first run
  (no weights are made).

  Returns bytes of 'params' (with batch-norm statistics), 'optimizer'
  (its state), 'full' (one full checkpoint), 'weights_only', 'runs' (the
  plan's run count) and 'peak': with keep_weights_only, every other run
  finished (weights only) plus the running one's newest two and best full
  checkpoints and one being written (orbax writes a new step before it
  drops the old); without, every run keeps 3 full checkpoints.
  """
  keys = runs.plan(config)
  run_config = runs.run_config(config, keys[0])
  model = models.create(run_config)
  variables = jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False),
      example_batch(run_config))
  tx = optim.create_optimizer(run_config, variables['params'])
  opt_state = jax.eval_shape(tx.init, variables['params'])
  size = lambda tree: sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                          for x in jax.tree.leaves(tree))
  weights = size(variables['params']) + size(
      variables.get('batch_stats', {}))
  optimizer = size(opt_state)
  full = weights + optimizer
  count = len(keys)
  peak = ((count - 1) * weights + 4 * full if config.get('keep_weights_only')
          else 3 * full * count)
  return {'params': weights, 'optimizer': optimizer, 'full': full,
          'weights_only': weights, 'runs': count, 'peak': peak}


def describe_plan_disk(config: ml_collections.ConfigDict,
                       workdir: str) -> str:
  """One paragraph: plan_disk_bytes in GB and the free disk at `workdir`."""
  sizes = plan_disk_bytes(config)
  gb = lambda b: f'{b / 1e9:.2f} GB'
  os.makedirs(workdir, exist_ok=True)
  free = shutil.disk_usage(workdir).free
  mode = ('finished runs keep weights only'
          if config.get('keep_weights_only') else
          'every run keeps the newest two + best full checkpoints')
  text = (f'Disk plan: {sizes["runs"]} runs; a full checkpoint '
          f'{gb(sizes["full"])} (weights {gb(sizes["params"])} + optimiser '
          f'{gb(sizes["optimizer"])}), weights only {gb(sizes["weights_only"])}'
          f'; {mode}: peak {gb(sizes["peak"])}; free at {workdir}: '
          f'{gb(free)}.')
  if sizes['peak'] > free:
    text += ' WARNING: the plan does not fit the free disk.'
  return text


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Trains and tests every fold of `config.folds`; writes the cross-fold
  table (JSON + Markdown + a per-AU F1 plot) under
  `workdir/<dataset>-<config>/<method>/` and prints it."""
  check_config(config)
  if config.get('keep_weights_only'):
    print(describe_plan_disk(config, workdir))
  builder = input_pipeline.open_dataset(config)
  results_by_fold = {}
  for fold in runs.folds_of(config):  # Fold numbers, or 'all'.
    results_by_fold[fold] = train_fold(config, workdir, fold, builder)
  return fold_evaluation.summarise(config, workdir, results_by_fold)
