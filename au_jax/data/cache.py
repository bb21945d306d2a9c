"""In-memory training split: decode once, sample batches with no host work.

`config.cache = 'device' | 'host' | None`. With a cache, the
fold's training split is read once, each face resized to
config.resize_size on the host (the only per-record host work) and stacked
into one uint8 array [N, R, R, 3] beside its labels, landmarks and ids.
Batches are then gathered from that array:

* 'host': a numpy gather per step (`HostSampler`), the batch copied to the
  devices as uint8 (4x fewer bytes than float32);
* 'device': the arrays live on every local device (replicated) and the
  gather runs there (`DeviceSampler`): only the step number crosses over.

Which records a step sees is a pure function of (seed, step): the records
are visited in a seeded permutation per epoch (`batch_indices`), so a run
resumed at step k draws exactly the batches it would have drawn. Crop,
mirror and normalisation stay on the device (au_jax/data/device_transforms.py).

Before decoding, `check_fits` compares the bytes needed with the free
memory (host: /proc/meminfo MemAvailable; device: `memory_stats()` where
the backend has it) and refuses with both sizes when it would not fit.
synthetic_au/default at R=200 is 7,680 x 120 kB = 0.9 GB; BP4D at 200 px
~146k frames ~17.5 GB.
"""

import dataclasses
import functools
import json
import os
from typing import Any, Mapping

import grain
import jax
import jax.numpy as jnp
from jax import lax
import ml_collections
import numpy as np

from au_jax.data import input_pipeline
from au_jax import parallel
from au_jax.data import transforms

MODES = ('device', 'host')
# Share of the free memory a cache may take: the model, optimiser state,
# activations (device) or worker processes and evaluation (host) need room.
MAX_FRACTION = 0.75
_GIB = 2.0**30


def check_mode(mode: str | None) -> None:
  if mode not in (None, *MODES):
    raise ValueError(f"config.cache must be 'device', 'host' or None, got "
                     f'{mode!r}.')


def host_free_bytes() -> int:
  """Memory the kernel says a new allocation can get (MemAvailable)."""
  try:
    with open('/proc/meminfo', encoding='ascii') as meminfo:
      for line in meminfo:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024  # kB
  except OSError:
    pass
  return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def device_free_bytes(device: Any = None) -> int | None:
  """Free bytes of `device`'s allocator, None where the backend does not say
  (XLA:CPU: its 'device' memory is host RAM)."""
  device = device or jax.local_devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except; backends differ.
    return None
  if not stats or 'bytes_limit' not in stats:
    return None
  return int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0))


def check_fits(needed: int, mode: str, what: str = 'the training split',
               max_fraction: float = MAX_FRACTION) -> None:
  """Raises a ValueError naming `needed` and the free bytes if a cache of
  `needed` bytes per copy would take more than `max_fraction` of them.

  'device' checks every local device's allocator (one copy each) and, on
  backends without memory statistics (CPU), the host for all copies; both
  modes also need the host to hold one copy while decoding.
  """
  check_mode(mode)
  checks = [('host RAM', needed, host_free_bytes())]
  if mode == 'device':
    devices = jax.local_devices()
    free = [device_free_bytes(d) for d in devices]
    if any(f is None for f in free):
      checks.append((f'host RAM for {len(devices)} {devices[0].platform} '
                     'device copies', needed * (len(devices) + 1),
                     host_free_bytes()))
    else:
      checks.append((f'{devices[0].device_kind} memory', needed, min(free)))
  for where, bytes_needed, free_bytes in checks:
    if bytes_needed > max_fraction * free_bytes:
      raise ValueError(
          f'config.cache={mode!r}: {what} needs {bytes_needed / _GIB:.2f} GiB '
          f'but only {free_bytes / _GIB:.2f} GiB of {where} is free (a cache '
          f'may use {max_fraction:.0%}); use cache=None (streaming), a '
          'smaller resize_size, or more memory.')


@dataclasses.dataclass
class CachedSplit:
  """A decoded split: every field stacked over its N records.

  arrays: 'image' [N, R, R, 3] uint8 (resized faces), 'au_occurrence'
    [N, C] int32 (config AU order, -1 unknown), 'au_intensity' [N, C]
    float32, 'landmarks' [N, 68, 2] float32 in the R x R frame, the record's
    numeric ids ('frame_index', 'view', 'emotion', 'identity', 'face_found')
    and 'record_index' [N] int32 (position in the split).
  """
  arrays: dict[str, np.ndarray]
  resize_size: int

  @property
  def num_records(self) -> int:
    return len(self.arrays['image'])

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self.arrays.values())


def record_bytes(example: Mapping[str, np.ndarray]) -> int:
  return sum(np.asarray(v).nbytes for v in example.values())


def _decode_fn(label_indices: np.ndarray, resize_size: int):
  select = transforms.SelectLabels(label_indices)

  def decode(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    example = select.map(record)
    example['image'], example['landmarks'] = transforms.resize_face(
        example['image'], np.asarray(example['landmarks'], np.float32),
        resize_size)
    return example
  return decode


def decode_source(source: Any, label_indices: np.ndarray, resize_size: int,
                  mode: str = 'host', num_threads: int | None = None,
                  what: str = 'the training split') -> CachedSplit:
  """Reads every record of `source` once into stacked arrays.

  Args:
    source: random-access records (a grain/TFDS data source or a list of
      record dicts as the builders write them).
    label_indices: [C] config AU columns (aus.label_indices).
    resize_size: side R of the stored faces.
    mode: which memory the cache will end in (for `check_fits`).
    num_threads: read threads (default: the machine's cores).
  """
  num_records = len(source)
  if not num_records:
    raise ValueError(f'{what} has no records to cache.')
  decode = _decode_fn(np.asarray(label_indices), resize_size)
  first = decode(source[0])
  check_fits(num_records * (record_bytes(first) + 4), mode,
             f'{what} ({num_records} frames at {resize_size}x{resize_size})')
  arrays = {key: np.empty((num_records,) + value.shape, value.dtype)
            for key, value in first.items()}
  dataset = grain.MapDataset.source(source).map(decode)
  threads = num_threads or os.cpu_count() or 1
  iterator = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=4 * threads))
  count = 0
  for index, example in enumerate(iterator):
    for key, array in arrays.items():
      if key not in example or np.shape(example[key]) != array.shape[1:]:
        raise ValueError(
            f'record {index} of {what}: field {key!r} has shape '
            f'{np.shape(example.get(key))}, record 0 had {array.shape[1:]}.')
      array[index] = example[key]
    count += 1
  if count != num_records:
    raise ValueError(f'{what}: read {count} of {num_records} records.')
  arrays['record_index'] = np.arange(num_records, dtype=np.int32)
  return CachedSplit(arrays, resize_size)


def build(config: ml_collections.ConfigDict, data: input_pipeline.FoldData,
          split: str = 'train') -> CachedSplit:
  """Decodes `split` of a fold (input_pipeline.fold_data) into host arrays."""
  mode = config.get('cache')
  check_mode(mode)
  subjects = getattr(data.subjects, split)
  source = input_pipeline._source(data.builder, subjects)  # pylint: disable=protected-access
  return decode_source(
      source, data.label_indices, config.resize_size, mode or 'host',
      config.get('cache_read_threads'),
      what=f'{config.dataset}/{config.dataset_config} {split} split')


# Sampling: pure functions of (seed, step), identical for both modes.


def epoch_permutation(seed: int | jax.Array, epoch: int | jax.Array,
                      num_records: int) -> jax.Array:
  """[N] int32: the order in which epoch `epoch` visits the records."""
  key = jax.random.fold_in(jax.random.key(seed), epoch)
  return jax.random.permutation(key, num_records).astype(jnp.int32)


def batch_indices(seed: int | jax.Array, step: int | jax.Array,
                  num_records: int, batch_size: int) -> jax.Array:
  """[B] int32 record indices of the `step`-th batch (0-based).

  The batches tile an endless stream of per-epoch permutations: batch s
  holds stream positions s*B .. s*B + B - 1, so every epoch visits every
  record exactly once (a batch may straddle two epochs). Jittable with a
  traced `step`; `num_records` and `batch_size` are static.
  """
  if not 0 < batch_size <= num_records:
    raise ValueError(f'batch of {batch_size} from a cache of {num_records} '
                     'records: need 0 < batch_size <= records.')
  start = jnp.asarray(step, jnp.int32) * batch_size
  first_epoch = start // num_records
  positions = start + jnp.arange(batch_size, dtype=jnp.int32)
  offsets = positions % num_records
  this = epoch_permutation(seed, first_epoch, num_records)
  following = epoch_permutation(seed, first_epoch + 1, num_records)
  return jnp.where(positions // num_records == first_epoch, this[offsets],
                   following[offsets])


def device_batch(arrays: Mapping[str, jax.Array], seed: int | jax.Array,
                 step: int | jax.Array, batch_size: int,
                 device_index: int | jax.Array = 0,
                 num_devices: int = 1) -> dict[str, jax.Array]:
  """This device's rows of global batch `step`, gathered from its copy.

  Device d of D gets rows d*B/D .. (d+1)*B/D - 1 of `batch_indices`, so the
  D shards concatenated are the one-device batch. Under pmap pass
  `lax.axis_index(...)` as `device_index`.
  """
  if batch_size % num_devices:
    raise ValueError(f'batch of {batch_size} does not split over '
                     f'{num_devices} devices.')
  num_records = len(arrays['image'])
  per_device = batch_size // num_devices
  indices = lax.dynamic_slice(
      batch_indices(seed, step, num_records, batch_size),
      (device_index * per_device,), (per_device,))
  return {key: jnp.take(value, indices, axis=0)
          for key, value in arrays.items()}


def replicate(array: np.ndarray, devices: list[Any]) -> jax.Array:
  """[D, ...] array with one copy of `array` on each of `devices`, in
  pmap's layout. Each copy goes straight from `array` to its device
  (flax.jax_utils.replicate first stacks D copies in host RAM: 8 x 17.5 GB
  for BP4D)."""
  mesh = jax.sharding.Mesh(np.array(devices), ('devices',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      'devices'))
  expanded = np.asarray(array)[None]  # a view, no copy
  shards = [jax.device_put(expanded, device) for device in devices]
  return jax.make_array_from_single_device_arrays(
      (len(devices),) + expanded.shape[1:], sharding, shards)


class _Sampler:
  """Iterator over batches 0, 1, ...; state = next step (grain-like API:
  get_state() -> bytes, set_state(bytes), so checkpointing treats it as a
  grain DataLoader iterator)."""

  def __init__(self, cached: CachedSplit, seed: int, batch_size: int):
    if not 0 < batch_size <= cached.num_records:
      raise ValueError(f'batch of {batch_size} from a cache of '
                       f'{cached.num_records} records.')
    self.seed, self.batch_size, self.step = int(seed), batch_size, 0
    self.num_records = cached.num_records

  def __iter__(self):
    return self

  def get_state(self) -> bytes:
    return json.dumps({'cache_step': self.step, 'seed': self.seed}).encode()

  def set_state(self, state: bytes) -> None:
    values = json.loads(state)
    if 'cache_step' not in values or values.get('seed') != self.seed:
      raise ValueError(f'cache sampler state {state!r} is not from a cached '
                       f'loader with seed {self.seed}.')
    self.step = int(values['cache_step'])


class HostSampler(_Sampler):
  """'host' mode: numpy batches [B, ...] (uint8 images), one gather a step.

  The permutation of an epoch is computed once (by `epoch_permutation`, so
  the indices equal `batch_indices`) and kept while it is in use.
  """

  def __init__(self, cached: CachedSplit, seed: int, batch_size: int):
    super().__init__(cached, seed, batch_size)
    self.arrays = cached.arrays
    self._permutations: dict[int, np.ndarray] = {}
    cpu = jax.devices('cpu')[0]
    self._permute = jax.jit(functools.partial(
        epoch_permutation, num_records=self.num_records), device=cpu)

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      for old in [e for e in self._permutations if e < epoch - 1]:
        del self._permutations[old]
      self._permutations[epoch] = np.asarray(self._permute(self.seed, epoch))
    return self._permutations[epoch]

  def indices(self, step: int) -> np.ndarray:
    positions = step * self.batch_size + np.arange(self.batch_size)
    epochs, offsets = np.divmod(positions, self.num_records)
    out = np.empty(self.batch_size, np.int32)
    for epoch in np.unique(epochs):
      rows = epochs == epoch
      out[rows] = self._permutation(int(epoch))[offsets[rows]]
    return out

  def __next__(self) -> dict[str, np.ndarray]:
    indices = self.indices(self.step)
    self.step += 1
    return {key: value[indices] for key, value in self.arrays.items()}


class DeviceSampler(_Sampler):
  """'device' mode: the cache replicated on every local device; each step
  returns the batch already sharded [D, B / D, ...] on the devices (feed it
  to a pmapped step without `parallel.shard`)."""

  sharded = True

  def __init__(self, cached: CachedSplit, seed: int, batch_size: int):
    super().__init__(cached, seed, batch_size)
    devices = jax.local_devices()
    if batch_size % len(devices):
      raise ValueError(f'batch of {batch_size} does not split over '
                       f'{len(devices)} devices.')
    self.arrays = jax.tree.map(
        functools.partial(replicate, devices=devices), cached.arrays)
    num_devices, seed = len(devices), self.seed

    def sample(arrays, step):
      return device_batch(arrays, seed, step, batch_size,
                          lax.axis_index(parallel.AXIS_NAME), num_devices)
    self._sample = jax.pmap(sample, axis_name=parallel.AXIS_NAME,
                            in_axes=(0, None))

  def __next__(self) -> dict[str, jax.Array]:
    batch = self._sample(self.arrays, np.int32(self.step))
    self.step += 1
    return batch


def train_iterator(config: ml_collections.ConfigDict,
                   data: input_pipeline.FoldData,
                   seed: int) -> HostSampler | DeviceSampler:
  """The cached training stream of a fold for config.cache ('host' or
  'device'): decodes the split (once per call) and returns its sampler."""
  mode = config.get('cache')
  check_mode(mode)
  if mode is None:
    raise ValueError('train_iterator needs config.cache = "host" or '
                     '"device"; use input_pipeline.train_loader otherwise.')
  cached = build(config, data)
  sampler = HostSampler if mode == 'host' else DeviceSampler
  return sampler(cached, seed, config.batch_size)
