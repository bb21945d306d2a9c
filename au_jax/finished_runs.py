"""Weights-only checkpoints of finished runs, and the disk a run plan needs.

A full checkpoint holds the optimiser state: a VGG-16 AUNet with Adam is
params + 2 moments = 3 x 537 MB, and the manager keeps latest + best. With
one run per AU (12 AUs x 3 folds on BP4D) that would not fit a 64 GB disk,
so a finished run (config.keep_weights_only) keeps only its best step's
params and batch-norm statistics in `<run>/best_weights/` (plus
`finished.json`: fingerprint, step) and its full checkpoints are deleted. A
later invocation finds the marker and reuses the run's test results instead
of training it again. `plan_disk_bytes` / `describe_plan_disk` size a plan's
checkpoints before it starts.

checkpointing.py re-exports the public names (and reads a weights-only run
in `restore_raw`); it is imported here inside functions only, so importing
either module first works.
"""

import json
import os
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

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
  from au_jax import checkpointing  # pylint: disable=g-import-not-at-top
  checkpointing.check_finite(
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
    from au_jax import checkpointing  # pylint: disable=g-import-not-at-top
    differs = checkpointing.differing_fields(saved, meta)
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


def plan_disk_bytes(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Disk a run plan needs, from the abstract train state of its first run
  (no weights are made).

  Returns bytes of 'params' (with batch-norm statistics), 'optimizer'
  (its state), 'full' (one full checkpoint), 'weights_only', 'runs' (the
  plan's run count) and 'peak': with keep_weights_only, every other run
  finished (weights only) plus the running one's latest and best full
  checkpoints and one being written (orbax writes a new step before it
  drops the old); without, every run keeps 2 full checkpoints.
  """
  from au_jax import models  # pylint: disable=g-import-not-at-top
  from au_jax import optim  # pylint: disable=g-import-not-at-top
  from au_jax import runs  # pylint: disable=g-import-not-at-top
  from au_jax import train  # pylint: disable=g-import-not-at-top
  keys = runs.plan(config)
  run_config = runs.run_config(config, keys[0])
  model = models.create(run_config)
  variables = jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False),
      train.example_batch(run_config))
  tx = optim.create_optimizer(run_config, variables['params'])
  opt_state = jax.eval_shape(tx.init, variables['params'])
  size = lambda tree: sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                          for x in jax.tree.leaves(tree))
  weights = size(variables['params']) + size(
      variables.get('batch_stats', {}))
  optimizer = size(opt_state)
  full = weights + optimizer
  count = len(keys)
  peak = ((count - 1) * weights + 3 * full if config.get('keep_weights_only')
          else 2 * full * count)
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
          'every run keeps latest + best full checkpoints')
  text = (f'Disk plan: {sizes["runs"]} runs; a full checkpoint '
          f'{gb(sizes["full"])} (weights {gb(sizes["params"])} + optimiser '
          f'{gb(sizes["optimizer"])}), weights only {gb(sizes["weights_only"])}'
          f'; {mode}: peak {gb(sizes["peak"])}; free at {workdir}: '
          f'{gb(free)}.')
  if sizes['peak'] > free:
    text += ' WARNING: the plan does not fit the free disk.'
  return text
