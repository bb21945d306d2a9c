"""Run directories and orbax checkpoints (newest two + best by validation F1).

A checkpoint holds three items written atomically by orbax (temporary folder,
then rename, so a killed run never leaves a half-written step):
  state: the unreplicated TrainState (params, batch_stats, optimiser state);
  data:  the grain iterator state, so a restarted run reads on from where the
         killed one stopped (one per process in a multi-process job, each
         reading its own shard; written by process 0 after a gather);
  meta:  the config fingerprint the state was trained with; restoring into a
         run with a different architecture/label set is refused clearly.

Finished runs that keep only their best weights (config.keep_weights_only)
are read and written here too (`save_weights_only`, `finished_run`,
`drop_full_checkpoints`). `check_writable` refuses a run directory that
cannot be written before any training.
"""


from absl import logging
import hashlib
import jax
import json
import ml_collections
import numpy as np
from orbax.checkpoint import checkpoint_managers
import orbax.checkpoint as ocp
import os
import shutil
import tempfile
from typing import Any
from au_jax import distributed
from au_jax import runs
from au_jax import tables

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
  path = os.path.join(directory, 'config.json')
  text = json.dumps(_plain(config), indent=1, sort_keys=True)
  tables.write_atomic(path, lambda f: f.write(text + '\n'))
  return path


def read_config(directory: str) -> ml_collections.ConfigDict:
  """The config a run directory was trained with (its config.json)."""
  path = os.path.join(directory, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {directory} is not an au_jax '
                            'run directory (train one with au_jax.main).')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


class NotWritableError(OSError):
  """A run directory (or its checkpoints/) cannot be written."""


def check_writable(directory: str) -> None:
  """Creates `directory` and writes and removes a small file in it and in
  its checkpoints/ folder (where one exists), so a run that could not save
  fails before training rather than at its first checkpoint.

  Raises:
    NotWritableError: naming the directory that cannot be written and the
      system's reason (permission denied, read-only file system, full disk,
      a file where a folder should be).
  """
  checkpoints = os.path.join(directory, 'checkpoints')
  for path in (directory, checkpoints):
    if path == checkpoints and not os.path.lexists(path):
      break  # orbax creates it inside the (writable) run directory.
    if os.path.lexists(path) and not os.path.isdir(path):
      raise NotWritableError(
          f'{path} cannot be written: it is a file (or a broken link), not '
          'a folder; the run saves its checkpoints, metrics and results '
          'there. Move it away or use another --workdir.')
    try:
      os.makedirs(path, exist_ok=True)
      handle, probe = tempfile.mkstemp(prefix='.write_check_', dir=path)
      try:
        os.write(handle, b'au_jax')
        os.fsync(handle)
      finally:
        os.close(handle)
        os.remove(probe)
    except OSError as error:
      raise NotWritableError(
          error.errno,
          f'{path} cannot be written ({error.strerror or error}: '
          f'{error.filename or path}); the run saves its checkpoints, '
          'metrics and results there. Fix its permissions or free disk, or '
          'use another --workdir.') from error


def create_manager(directory: str,
                   create: bool = True) -> ocp.CheckpointManager:
  """Keeps the newest two steps and the best step by validation mean F1."""
  # Best by the validation number the trainer saves as BEST_METRIC (mean
  # F1 at the test decision rule, AUC or accuracy: config.best_metric).
  # Two newest, not one: when the newest step is damaged and is also the
  # best, restore still has an intact step to fall back to.
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=2),
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
      continue
    if errors:
      # One warning for the whole fall-back, naming each skipped step.
      # The run trains those steps again, and orbax refuses to save a step
      # that exists: the damaged ones are moved out of its way, kept.
      aside = _set_aside(manager, [s for s, _ in errors])
      logging.warning('%s; restored step %d, the newest intact one (the '
                      'damaged steps are moved to %s).',
                      _describe_damaged(manager, errors), candidate, aside)
    return restored['state'], dict(restored['data'] or {}), candidate
  raise RuntimeError(
      f'No intact checkpoint in {manager.directory} '
      f'({_describe_damaged(manager, errors)}). Start over by deleting '
      f'{os.path.dirname(str(manager.directory))} or use another --workdir.')


DAMAGED_DIR = 'damaged_checkpoints'


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> str:
  """Moves step folders `steps` to `<run dir>/damaged_checkpoints/` (a
  name already there gets a numbered suffix); returns that folder."""
  aside = os.path.join(os.path.dirname(str(manager.directory)), DAMAGED_DIR)
  if distributed.is_primary():
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      target = os.path.join(aside, str(step))
      suffix = 0
      while os.path.lexists(target):
        suffix += 1
        target = os.path.join(aside, f'{step}.{suffix}')
      os.replace(os.path.join(str(manager.directory), str(step)), target)
  distributed.barrier('au_jax: damaged checkpoints moved')
  manager.reload()
  return aside


def _describe_damaged(manager: ocp.CheckpointManager,
                      errors: list[tuple[int, Exception]]) -> str:
  """'Checkpoint <dir>/<step> is damaged (<error>)' for each of `errors`."""
  def first_line(error):
    return (str(error).splitlines() or [''])[0][:200]
  return '; '.join(
      f'Checkpoint {manager.directory}/{step} is damaged '
      f'({type(error).__name__}: {first_line(error)})'
      for step, error in errors)


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


WEIGHTS_DIR = 'best_weights'
FINISHED = 'finished.json'


def save_weights_only(directory: str, state: Any, step: int,
                      meta: dict[str, Any], num_train_steps: int) -> str:
  """Writes `<directory>/best_weights/` (state: params + batch_stats of
  `state`, no optimiser state; finished.json: `meta`, step,
  num_train_steps) through a temporary folder renamed last, so the marker
  exists only when the weights are complete. Returns its path."""
  tree = {'params': _get(state, 'params'),
          'batch_stats': _get(state, 'batch_stats') or {}}
  check_finite(
      tree, f'weights-only checkpoint of step {step}')
  path = os.path.join(directory, WEIGHTS_DIR)
  temporary = path + '.tmp'
  shutil.rmtree(temporary, ignore_errors=True)
  os.makedirs(temporary)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(temporary, 'state'),
                      jax.tree.map(np.asarray, tree))
    checkpointer.wait_until_finished()
  with open(os.path.join(temporary, FINISHED), 'w') as f:
    json.dump({'meta': meta, 'step': int(step),
               'num_train_steps': int(num_train_steps)}, f, indent=1)
  shutil.rmtree(path, ignore_errors=True)
  os.replace(temporary, path)
  return path


def _get(state: Any, name: str) -> Any:
  return state.get(name) if isinstance(state, dict) else getattr(state, name)


def restore_weights_only(directory: str) -> tuple[dict[str, Any], int]:
  """({'params', 'batch_stats'}, step) of a run's weights-only checkpoint."""
  path = os.path.join(directory, WEIGHTS_DIR)
  with open(os.path.join(path, FINISHED)) as f:
    step = json.load(f)['step']
  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.restore(os.path.join(path, 'state'))
  return dict(tree), int(step)


def finished_run(directory: str, meta: dict[str, Any],
                 num_train_steps: int) -> dict[str, Any] | None:
  """The finished.json of a run that finished with weights only, or None.

  Raises ValueError when it was written by another config (the fields that
  differ), or finished at another num_train_steps and has no full
  checkpoint left to continue from.
  """
  path = os.path.join(directory, WEIGHTS_DIR, FINISHED)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    finished = json.load(f)
  saved = finished['meta']
  if saved.get('hash') != meta.get('hash'):
    differs = differing_fields(saved, meta)
    raise ValueError(
        f'{path}: the run finished with a different config (fields that '
        f'differ: {differs}). Use another --workdir or delete {directory}.')
  if finished['num_train_steps'] != num_train_steps:
    raise ValueError(
        f'{path}: the run finished at {finished["num_train_steps"]} steps '
        f'and kept only its best weights (config.keep_weights_only), so it '
        f'cannot continue to {num_train_steps}. Delete {directory} to train '
        'it again.')
  return finished


def drop_full_checkpoints(directory: str) -> int:
  """Deletes `<directory>/checkpoints` (after save_weights_only); returns
  the bytes freed."""
  path = os.path.join(directory, 'checkpoints')
  freed = directory_bytes(path)
  shutil.rmtree(path, ignore_errors=True)
  return freed


def directory_bytes(path: str) -> int:
  total = 0
  for root, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  return total


def read_test_results(directory: str) -> dict[str, Any]:
  """A run's test_results.json with the arrays of test_results_
  predictions.npz (read with allow_pickle=False), as the trainer returned
  them."""
  with open(os.path.join(directory, 'test_results.json')) as f:
    results = json.load(f)
  path = os.path.join(directory, 'test_results_predictions.npz')
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as arrays:
      results.update({k: arrays[k] for k in arrays.files})
  return results
