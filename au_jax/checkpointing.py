"""Run directories and orbax checkpoints (latest + best by validation F1).

A checkpoint holds three items written atomically by orbax (temporary folder,
then rename, so a killed run never leaves a half-written step):
  state: the unreplicated TrainState (params, batch_stats, optimiser state);
  data:  the grain iterator state, so a restarted run reads on from where the
         killed one stopped (one per process in a multi-process job, each
         reading its own shard; written by process 0 after a gather);
  meta:  the config fingerprint the state was trained with; restoring into a
         run with a different architecture/label set is refused clearly.

Finished runs that keep only their best weights (config.keep_weights_only)
and the disk a run plan needs are in finished_runs.py; their public names
are re-exported here.
"""

import hashlib
import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

# Re-exported: callers use them as `checkpointing.<name>`.
# pylint: disable=unused-import
from au_jax.finished_runs import FINISHED
from au_jax.finished_runs import WEIGHTS_DIR
from au_jax.finished_runs import describe_plan_disk
from au_jax.finished_runs import directory_bytes
from au_jax.finished_runs import drop_full_checkpoints
from au_jax.finished_runs import finished_run
from au_jax.finished_runs import plan_disk_bytes
from au_jax.finished_runs import read_test_results
from au_jax.finished_runs import restore_weights_only
from au_jax.finished_runs import save_weights_only
# pylint: enable=unused-import

BEST_METRIC = 'val_best'  # Saved with each evaluated step; see train.py.

# Fields that only extend or observe a run: they never change what a given
# step's parameters are, so a run may resume with other values (raising
# num_train_steps continues a finished run). Every other field, including
# any field added later, is part of the fingerprint.
OBSERVE_FIELDS = frozenset({
    'num_train_steps', 'log_every_steps', 'eval_every_steps',
    'checkpoint_every_steps', 'num_workers', 'worker_buffer_size',
    'eval_read_threads', 'progress_bar', 'eval_batch_size', 'data_dir',
    'manual_dir', 'folds', 'stages', 'stage_order', 'run_view',
    'run_au', 'run_fold', 'median_window', 'svm_on_fc9', 'test_dataset',
    'test_dataset_config', 'cache_dir', 'config_file', 'prefetch_batches',
    'keep_weights_only',
})


def run_dir(config: ml_collections.ConfigDict, workdir: str, fold) -> str:
  """The run directory of `fold` (or a runs.RunKey); see runs.run_dir."""
  from au_jax import runs  # pylint: disable=g-import-not-at-top
  return runs.run_dir(config, workdir, fold)


def _plain(value: Any) -> Any:
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  return json.loads(json.dumps(value, default=list, sort_keys=True))


def fingerprint(config: ml_collections.ConfigDict,
                data_version: str | None = None) -> dict[str, Any]:
  """Every result-changing field of `config` (all but OBSERVE_FIELDS),
  JSON-serialisable, plus 'data_version' and a short 'hash' of them all.

  Learning-rate schedules that depend on num_train_steps ('linear') make
  the step count result-changing: it is kept then.
  """
  out = {}
  for field in sorted(config.keys()):
    if field in OBSERVE_FIELDS and not (
        field == 'num_train_steps' and config.get('lr_schedule') == 'linear'):
      continue
    out[field] = _plain(config[field])
  if data_version is not None:
    out['data_version'] = data_version
  out['hash'] = hashlib.sha256(
      json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
  return out


def data_version(builder: Any) -> str:
  """The dataset's name, builder config, version and per-split frame counts,
  hashed: a rebuilt dataset with other contents gets another version."""
  splits = sorted((name, info.num_examples)
                  for name, info in builder.info.splits.items())
  text = json.dumps([builder.info.full_name, splits])
  return (f'{builder.info.full_name}:'
          f'{hashlib.sha256(text.encode()).hexdigest()[:12]}')


def write_config(config: ml_collections.ConfigDict, directory: str) -> str:
  """Writes `<directory>/config.json` (the run's full config) atomically, so
  a run directory describes itself (predict reads it)."""
  from au_jax import tables  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, 'config.json')
  text = json.dumps(_plain(config), indent=1, sort_keys=True)
  tables._write_atomic(path, lambda f: f.write(text + '\n'))  # pylint: disable=protected-access
  return path


def read_config(directory: str) -> ml_collections.ConfigDict:
  """The config a run directory was trained with (its config.json)."""
  path = os.path.join(directory, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {directory} is not an au_jax '
                            'run directory (train one with au_jax.main).')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def create_manager(directory: str,
                   create: bool = True) -> ocp.CheckpointManager:
  """Keeps the latest step and the best step by validation mean F1."""
  # Best by the validation number the trainer saves as BEST_METRIC (mean
  # F1 at the test decision rule, AUC or accuracy: config.best_metric).
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=1),
      checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics[BEST_METRIC], reverse=False,
          n=1, keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      best_fn=lambda metrics: metrics[BEST_METRIC], best_mode='max',
      preservation_policy=policy, create=create,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(
      os.path.join(directory, 'checkpoints'), options=options,
      item_names=('state', 'data', 'meta'))


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_state: dict[str, Any] | None, meta: dict[str, Any],
         metrics: dict[str, float] | None = None) -> None:
  """Saves the host copy of `state` with the data position and fingerprint
  `meta`. Refuses non-finite parameters: a diverged state is never saved."""
  check_finite(state, f'step {step}')
  manager.save(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_state or {}),
          meta=ocp.args.JsonSave(meta)),
      metrics=metrics, force=True)


def data_state(positions: list[str]) -> dict[str, Any]:
  """The checkpoint's 'data' item from the data-iterator position of every
  process (index = process). One process keeps the one-key form
  {'iterator'}; a P-process job adds 'iterators' (all P, since each process
  reads its own shard) and 'process_count'."""
  if len(positions) == 1:
    return {'iterator': positions[0]}
  return {'iterator': positions[0], 'iterators': list(positions),
          'process_count': len(positions)}


def iterator_state(data: dict[str, Any] | None, process_index: int = 0,
                   process_count: int = 1) -> str | None:
  """This process's saved data-iterator position (None: none saved).

  A checkpoint written by a job with another process count is refused: each
  process's position belongs to its shard of the batches."""
  if not data or 'iterator' not in data:
    return None
  positions = data.get('iterators') or [data['iterator']]
  if len(positions) != process_count:
    raise ValueError(
        f'The checkpoint holds the data positions of a {len(positions)}-'
        f'process job; this job has {process_count} process(es). Resume it '
        f'with {len(positions)} process(es), or use another --workdir.')
  return positions[process_index]


class NonFiniteError(FloatingPointError):
  """Training produced nan/inf; the message names the step and quantity."""


def check_finite(state: Any, where: str) -> None:
  """Raises NonFiniteError naming the first non-finite parameter or
  batch-norm statistic of `state`."""
  for group in ('params', 'batch_stats'):
    tree = (state.get(group) if isinstance(state, dict)
            else getattr(state, group, None))
    if not tree:
      continue
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      if not np.all(np.isfinite(np.asarray(leaf, np.float32))):
        name = '/'.join(str(getattr(k, 'key', k)) for k in path)
        raise NonFiniteError(f'{where}: {group} {name} is not finite; not '
                             'saved (the last finite checkpoint is kept).')


def differing_fields(saved: dict[str, Any],
                     expected: dict[str, Any]) -> list[str]:
  keys = (set(saved) | set(expected)) - {'hash'}
  return sorted(k for k in keys if saved.get(k) != expected.get(k))


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            meta: dict[str, Any], step: int | None = None
            ) -> tuple[Any, dict[str, Any], int] | None:
  """(state, data_state, step) of `step`, or of the newest intact step; None
  when the run has no checkpoint.

  A damaged step (unreadable, truncated) is skipped with one log line naming
  it and the error; with no intact step left, one error names the run
  directory and how to start over. A checkpoint written by a different
  config is refused with the fields that differ.
  """
  steps = [step] if step is not None else sorted(manager.all_steps(),
                                                 reverse=True)
  if not steps:
    return None
  errors = []
  for candidate in steps:
    try:
      saved = manager.restore(
          candidate,
          args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    except Exception as error:  # pylint: disable=broad-except
      errors.append((candidate, error))
      logging.warning('Checkpoint %s/%s is damaged (%s: %s); trying the '
                      'previous step.', manager.directory, candidate,
                      type(error).__name__, str(error).splitlines()[0][:200])
      continue
    if saved.get('hash') != meta.get('hash'):
      differs = differing_fields(saved, meta)
      raise ValueError(
          f'Checkpoint {manager.directory}/{candidate} was written by a '
          f'different config (fields that differ: {differs}; saved '
          f'{ {k: saved.get(k) for k in differs} }, now '
          f'{ {k: meta.get(k) for k in differs} }). Use another --workdir or '
          'delete that run directory.')
    try:
      restored = manager.restore(
          candidate, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state),
              data=ocp.args.JsonRestore()))
    except Exception as error:  # pylint: disable=broad-except
      errors.append((candidate, error))
      logging.warning('Checkpoint %s/%s is damaged (%s: %s); trying the '
                      'previous step.', manager.directory, candidate,
                      type(error).__name__, str(error).splitlines()[0][:200])
      continue
    if errors:
      logging.warning('Restored step %d of %s (damaged: %s).', candidate,
                      manager.directory, [s for s, _ in errors])
    return restored['state'], dict(restored['data'] or {}), candidate
  raise RuntimeError(
      f'No intact checkpoint in {manager.directory} (damaged steps: '
      f'{[s for s, _ in errors]}; last error: {errors[-1][1]!r:.200}). Start '
      f'over by deleting {os.path.dirname(str(manager.directory))} or use '
      'another --workdir.')


def restore_raw(directory: str) -> tuple[dict[str, Any], int]:
  """(state tree as nested dicts, step) of a run directory's best step, else
  its newest intact step, without a target structure (init_from, predict).
  A finished weights-only run (no checkpoints/ left) gives its best
  weights."""
  weights = os.path.join(directory, WEIGHTS_DIR)
  finished = os.path.exists(os.path.join(weights, FINISHED))
  if finished and not os.path.isdir(os.path.join(directory, 'checkpoints')):
    return restore_weights_only(directory)
  manager = create_manager(directory, create=False)
  try:
    candidates = [manager.best_step()] + sorted(manager.all_steps(),
                                                reverse=True)
    for step in [s for s in candidates if s is not None]:
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))
        return restored['state'], step
      except Exception as error:  # pylint: disable=broad-except
        logging.warning('Checkpoint %s/%s is damaged (%s); trying another.',
                        directory, step, str(error).splitlines()[0][:200])
  finally:
    manager.close()
  if finished:
    return restore_weights_only(directory)
  raise FileNotFoundError(f'{directory} holds no finished checkpoint.')
