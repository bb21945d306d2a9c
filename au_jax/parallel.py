"""Data parallelism in the pmap model: everything that touches devices.

Each local device runs the same per-device step on its shard of the global
batch; gradients are averaged with `lax.pmean` over the axis `AXIS_NAME` and
batch-norm statistics are synchronised over the same axis (models take
`axis_name=AXIS_NAME`). One device is the degenerate case of the same code.
"""

from typing import Any, Callable

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np

AXIS_NAME = 'batch'

PyTree = Any


def device_count() -> int:
  return jax.local_device_count()


def global_rows(local_rows: int) -> tuple[jax.Array | None, int]:
  """Where this device's rows sit in the batch a one-device run sees.

  Random draws (crops, mirrors, dropout masks) are made for that whole
  batch from a key that no device index enters, and each device takes its
  rows, so P processes x D devices draw what 1 x 1 draws for every example.
  The loader deals the global batch to processes interleaved
  (input_pipeline.train_loader: process p holds rows p, p + P, ...) and
  `shard` gives each local device a contiguous block of its process's rows.

  Args:
    local_rows: b, the rows of the batch on this device.

  Returns:
    (rows [b] int32 under pmap, else None; the global batch size).
  """
  try:
    device = jax.lax.axis_index(AXIS_NAME)
  except NameError:  # Not under pmap (tests, init): one device.
    return None, local_rows
  devices = jax.lax.psum(1, AXIS_NAME)  # A Python int: the axis size.
  processes = jax.process_count()
  per_process = devices // processes
  process, local_device = device // per_process, device % per_process
  local = local_device * local_rows + jnp.arange(local_rows)
  return (local * processes + process).astype(jnp.int32), devices * local_rows


def replicate(tree: PyTree) -> PyTree:
  """Copies `tree` onto every local device (leading axis = device)."""
  return flax.jax_utils.replicate(tree)


def unreplicate(tree: PyTree) -> PyTree:
  """The first device's copy, fetched to the host."""
  return jax.device_get(flax.jax_utils.unreplicate(tree))


def shard(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """[B, ...] numeric arrays -> [D, B / D, ...]; non-numeric keys are dropped.

  Raises a ValueError naming the batch size and device count when B is not a
  multiple of the number of local devices.
  """
  devices = device_count()
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind not in 'biuf':
      continue  # Text ids stay on the host.
    if value.shape[0] % devices:
      raise ValueError(
          f'Batch of {value.shape[0]} ({key!r}) does not split over '
          f'{devices} devices; make config.batch_size a multiple of '
          f'{devices}.')
    out[key] = value.reshape((devices, -1) + value.shape[1:])
  return out


def unshard(tree: PyTree) -> PyTree:
  """[D, B / D, ...] device arrays -> [B, ...] numpy arrays on the host."""
  return jax.tree_util.tree_map(
      lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), jax.device_get(tree))


def pad_batch(batch: dict[str, np.ndarray],
              size: int) -> dict[str, np.ndarray]:
  """Pads a (last) batch to `size` rows and adds `mask` [size] (False = pad)."""
  n = len(next(iter(batch.values())))
  if n > size:
    raise ValueError(f'Batch of {n} is larger than the padded size {size}.')
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    pad = [(0, size - n)] + [(0, 0)] * (value.ndim - 1)
    out[key] = np.pad(value, pad) if value.dtype.kind != 'O' else np.concatenate(
        [value, np.full((size - n,) + value.shape[1:], b'', object)])
  mask = np.zeros([size], bool)
  mask[:n] = batch.get('mask', np.ones([n], bool))
  out['mask'] = mask
  return out


def pmap_step(fn: Callable[..., Any], donate_state: bool = True,
              **kwargs: Any) -> Callable[..., Any]:
  """`jax.pmap` over local devices with the batch axis named AXIS_NAME."""
  return jax.pmap(fn, axis_name=AXIS_NAME,
                  donate_argnums=(0,) if donate_state else (), **kwargs)


def sync_batch_stats(state: Any) -> Any:
  """Averages batch-norm statistics over devices (they should already agree:
  models normalise with cross-device statistics; this removes float drift)."""
  if not getattr(state, 'batch_stats', None):
    return state
  average = jax.pmap(lambda x: jax.lax.pmean(x, AXIS_NAME), AXIS_NAME)
  return state.replace(batch_stats=average(state.batch_stats))


class Prefetcher:
  """Keeps `size` sharded batches on the devices ahead of the step, so the
  host-to-device copy overlaps compute (double buffering).

  The wrapped iterator runs ahead, so its own state is not the position of
  the batch being trained on: `get_state()` returns the state recorded
  right after the batch last handed out was read, which is what a
  checkpoint must hold for an exact resume.
  """

  sharded = True

  def __init__(self, iterator: Any, size: int = 2):
    self._iterator = iterator
    self._size = max(1, size)
    self._queue = []
    self._state = iterator.get_state()

  def __iter__(self):
    return self

  def _fill(self) -> None:
    while len(self._queue) < self._size:
      batch = next(self._iterator)
      if not getattr(self._iterator, 'sharded', False):
        batch = to_devices(shard(batch))
      self._queue.append((batch, self._iterator.get_state()))

  def __next__(self) -> Any:
    self._fill()
    batch, self._state = self._queue.pop(0)
    return batch

  def get_state(self) -> bytes:
    return self._state

  def set_state(self, state: bytes) -> None:
    self._iterator.set_state(state)
    self._queue = []
    self._state = state


def to_devices(sharded: dict[str, np.ndarray]) -> dict[str, Any]:
  """[D, ...] numpy arrays -> one array per leaf spread over local devices."""
  # pmap's own input layout: the leading axis over a 1-D mesh of the local
  # devices (what jax.pmap returns and accepts without another copy).
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ('devices',))
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('devices'))
  return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding),
                                sharded)
