r"""Multi-process (multi-host) training with `jax.distributed`.

One process per node (or per GPU) joins the job before any other JAX call:

  python -m au_jax.main --config=... --coordinator_address=node0:12345 \
      --num_processes=2 --process_id=0     # on node0; --process_id=1 on node1

or with no flags inside a cluster JAX detects (SLURM `srun` with more than
one task, Open MPI `mpirun`), or with the environment variables
JAX_COORDINATOR_ADDRESS, AU_JAX_NUM_PROCESSES, AU_JAX_PROCESS_ID. A single
process (no flags, no cluster) does not call `jax.distributed` at all: the
default run is unchanged.

What the trainer does differently when `process_count() > 1`:
  * data: every process reads its own 1/P of each global batch (grain
    sharding by process: input_pipeline.train_loader); `config.batch_size`
    stays the global batch;
  * compute: `jax.pmap` spans the devices of all processes, so the gradient
    `pmean` and the batch-norm statistics cover the global batch;
  * evaluation: each process scores its block of the frames and the rows are
    gathered (`allgather_rows`), so every process holds the same results and
    every frame counts exactly once (fold_evaluation.Evaluator);
  * files: only process 0 writes metrics, tables, plots and config.json
    (`is_primary`); orbax checkpoints are saved and restored by every
    process (orbax writes the replicated host state from process 0), and
    each process's data-iterator position is saved beside the state.
Checkpoints and results need a directory every node sees (a shared file
system), as orbax requires for multi-host checkpoints.
"""

import os
from typing import Any

from absl import flags
from absl import logging
import jax
import numpy as np
from jax.experimental import multihost_utils

_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'Multi-process training: host:port of process 0 (every process passes '
    'the same). Default: $JAX_COORDINATOR_ADDRESS, or detected (SLURM, '
    'Open MPI).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None,
    'Multi-process training: number of processes in the job. Default: '
    '$AU_JAX_NUM_PROCESSES, or detected.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None,
    'Multi-process training: this process\'s index, 0..num_processes-1. '
    'Default: $AU_JAX_PROCESS_ID, or detected.')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'],
    "Join a multi-process job: 'auto' when a coordinator/process count is "
    "given or a multi-task SLURM/Open MPI job is detected; 'on' always "
    "(JAX's own cluster detection); 'off' never.")

_joined = False


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ''):
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'${name}={value!r} is not an integer.') from None


def detected_cluster() -> str | None:
  """The multi-process launcher this process runs under, if any: 'slurm'
  (`srun` with more than one task) or 'ompi' (`mpirun -n` > 1)."""
  if ('SLURM_STEP_NODELIST' in os.environ
      and (_env_int('SLURM_STEP_NUM_TASKS') or
           _env_int('SLURM_NTASKS') or 1) > 1):
    return 'slurm'
  if (_env_int('OMPI_COMM_WORLD_SIZE') or 1) > 1:
    return 'ompi'
  return None


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               mode: str = 'auto') -> bool:
  """Joins a multi-process job when asked to or when one is detected.

  Returns True when `jax.distributed.initialize` was called. Must run before
  anything initialises a JAX backend (jax.devices(), an array, a jit).
  On CPU the cross-process collectives use gloo.
  """
  global _joined
  if mode not in ('auto', 'on', 'off'):
    raise ValueError(f"distributed mode must be 'auto', 'on' or 'off', got "
                     f'{mode!r}.')
  coordinator_address = (coordinator_address
                         or os.environ.get('JAX_COORDINATOR_ADDRESS') or None)
  if num_processes is None:
    num_processes = _env_int('AU_JAX_NUM_PROCESSES')
  if process_id is None:
    process_id = _env_int('AU_JAX_PROCESS_ID')
  explicit = (coordinator_address is not None or num_processes is not None
              or process_id is not None)
  if mode == 'off':
    if explicit:
      raise ValueError('--distributed=off, but a coordinator address, process'
                       ' count or process id is set: drop one or the other.')
    return False
  if mode == 'auto' and not explicit and detected_cluster() is None:
    return False
  if explicit and (num_processes is None or process_id is None
                   or coordinator_address is None) and (
                       detected_cluster() is None):
    raise ValueError(
        'Multi-process training needs --coordinator_address, '
        '--num_processes and --process_id together (got '
        f'{coordinator_address!r}, {num_processes!r}, {process_id!r}), or a '
        'cluster JAX detects (SLURM srun, Open MPI).')
  if num_processes is not None and num_processes < 1:
    raise ValueError(f'--num_processes must be >= 1, got {num_processes}.')
  if process_id is not None and num_processes is not None and not (
      0 <= process_id < num_processes):
    raise ValueError(f'--process_id must be in [0, {num_processes}), got '
                     f'{process_id}.')
  if num_processes == 1:
    return False  # One process: nothing to join.
  # Cross-process collectives on CPU (tests, CPU clusters); GPUs use NCCL.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  _joined = True
  logging.info('Joined a %d-process job as process %d (%d local / %d global '
               'devices).', jax.process_count(), jax.process_index(),
               jax.local_device_count(), jax.device_count())
  return True


def initialize_from_flags() -> bool:
  """`initialize` with the --coordinator_address/--num_processes/
  --process_id/--distributed flags (au_jax.main)."""
  return initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                    _PROCESS_ID.value, _DISTRIBUTED.value)


def process_count() -> int:
  return jax.process_count()


def process_index() -> int:
  return jax.process_index()


def is_primary() -> bool:
  """Whether this process writes files (metrics, tables, plots): process 0."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches `name` (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def allgather_rows(tree: Any) -> Any:
  """Concatenates every process's numpy arrays along axis 0, in process
  order (each process must pass the same shapes). Identity with one
  process."""
  if jax.process_count() == 1:
    return tree
  return jax.tree_util.tree_map(
      np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def allgather_text(text: str) -> list[str]:
  """Every process's `text` (UTF-8), indexed by process."""
  if jax.process_count() == 1:
    return [text]
  data = np.frombuffer(text.encode('utf-8'), np.uint8)
  lengths = allgather_rows(np.asarray([data.size], np.int64))
  padded = np.zeros([int(lengths.max())], np.uint8)
  padded[:data.size] = data
  rows = allgather_rows(padded[None])
  return [bytes(row[:n]).decode('utf-8') for row, n in zip(rows, lengths)]


def all_agree(ok: bool) -> bool:
  """True when `ok` holds on every process (collective)."""
  if jax.process_count() == 1:
    return bool(ok)
  return bool(np.all(allgather_rows(np.asarray([bool(ok)], np.int32))))
