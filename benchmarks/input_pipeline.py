r"""Host input pipeline throughput: images/s by path, worker count and size.

Reads fold 1's training split of `synthetic_au/default` (built first into
--data_dir if absent) with the `configs/drml.py:paper` input (resize 200,
crop 170, mirror, batch 128) and times, after --warmup batches:

  loader   `input_pipeline.train_loader` as the trainer uses it today
           (host resize + random crop + mirror + float32 normalise);
  uint8    the host only decodes and resizes (SelectLabels + resize, uint8
           batches): what is left for the host once crop/mirror/normalise
           run on the device (au_jax/data/device_transforms.py);
  cache    `cache.HostSampler` (one numpy gather a step from the decoded
           split) and `cache.DeviceSampler` + `device_transforms.
           train_preprocess` jitted on the default device (the whole
           per-step input work of config.cache='device').

  PYTHONPATH=. python benchmarks/input_pipeline.py \
      --data_dir=/tmp/tfds_bench --workers=0,1,2 --sizes=200:170

Prints the machine, versions, one row per measurement and a one-line
result. Figures: benchmarks/README.md.
"""

import os
import platform
import time

from absl import app
from absl import flags
import grain
import jax
import numpy as np

from au_jax.data import cache
from au_jax.data import device_transforms
from au_jax.data import input_pipeline
from au_jax.data import transforms
from configs import drml

_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'TFDS data_dir (default $AU_JAX_DATA_DIR).')
_WORKERS = flags.DEFINE_list('workers', ['0', '1', '2'],
                             'grain worker counts to time.')
_SIZES = flags.DEFINE_list('sizes', ['200:170'],
                           'resize:crop pairs to time.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Images per batch.')
_BATCHES = flags.DEFINE_integer('batches', 8, 'Timed batches per row.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed batches first.')
_PATHS = flags.DEFINE_list('paths', ['loader', 'uint8', 'cache'],
                           'Which pipelines to time.')


def machine() -> str:
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
  return (f'{platform.node()} {platform.processor() or platform.machine()}, '
          f'{os.cpu_count()} cores (load {load:.1f}), '
          f'{jax.devices()[0].device_kind}; Python '
          f'{platform.python_version()}, jax {jax.__version__}, grain '
          f'{grain.__version__ if hasattr(grain, "__version__") else "?"}, '
          f'numpy {np.__version__}')


class ResizeOnly(grain.transforms.Map):
  """Host part of the device-augmented path: resize to R, stay uint8."""

  def __init__(self, size: int):
    self.size = size

  def map(self, element):
    out = dict(element)
    out['image'], out['landmarks'] = transforms.resize_face(
        element['image'], np.asarray(element['landmarks'], np.float32),
        self.size)
    return out


def uint8_loader(config, data, seed, workers):
  source = input_pipeline._source(data.builder, data.subjects.train)  # pylint: disable=protected-access
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shuffle=True, num_epochs=None, seed=seed,
      shard_options=grain.sharding.NoSharding())
  return grain.DataLoader(
      data_source=source, sampler=sampler,
      operations=[transforms.SelectLabels(data.label_indices),
                  ResizeOnly(config.resize_size),
                  grain.transforms.Batch(config.batch_size,
                                         drop_remainder=True)],
      worker_count=workers, worker_buffer_size=2)


def time_iterator(iterator, block=None) -> float:
  """Images/s over --batches after --warmup batches."""
  for _ in range(_WARMUP.value):  # includes any compile of `block`
    batch = next(iterator)
    if block:
      batch = block(batch)
  jax.block_until_ready(batch)
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    batch = next(iterator)
    if block:
      batch = block(batch)
  jax.block_until_ready(batch)
  return _BATCHES.value * _BATCH.value / (time.perf_counter() - start)


def main(argv):
  del argv
  print(machine())
  rows = []
  for pair in _SIZES.value:
    resize, crop = (int(v) for v in pair.split(':'))
    config = drml.get_config('paper')
    config.data_dir = _DATA_DIR.value
    config.resize_size, config.crop_size = resize, crop
    config.batch_size = _BATCH.value
    data = input_pipeline.fold_data(
        config, input_pipeline.open_dataset(config), 1)
    for workers in (int(w) for w in _WORKERS.value):
      config.num_workers = workers
      if 'loader' in _PATHS.value:
        rows.append((f'loader float32 (today) {resize}->{crop}', workers,
                     time_iterator(iter(input_pipeline.train_loader(
                         config, data, seed=1)))))
        print(*rows[-1], flush=True)
      if 'uint8' in _PATHS.value:
        rows.append((f'uint8 decode+resize {resize}', workers,
                     time_iterator(iter(uint8_loader(config, data, 1,
                                                     workers)))))
        print(*rows[-1], flush=True)
    if 'cache' in _PATHS.value:
      start = time.perf_counter()
      cached = cache.build(config, data)
      seconds = time.perf_counter() - start
      print(f'cache build {resize}: {cached.num_records} frames, '
            f'{cached.nbytes / 2**30:.2f} GiB, {seconds:.1f} s '
            f'({cached.num_records / seconds:.0f} frames/s)', flush=True)
      rows.append((f'cache host {resize}', '-', time_iterator(
          cache.HostSampler(cached, 1, config.batch_size))))
      print(*rows[-1], flush=True)
      key = device_transforms.augmentation_key(1, 0)
      augment = jax.pmap(
          lambda batch: device_transforms.train_preprocess(batch, key,
                                                           config),
          axis_name='batch')
      rows.append((f'cache device + device aug {resize}->{crop}', '-',
                   time_iterator(cache.DeviceSampler(
                       cached, 1, config.batch_size), block=augment)))
      print(*rows[-1], flush=True)
  print('\n| path | workers | images/s |\n|---|---|---|')
  for name, workers, rate in rows:
    print(f'| {name} | {workers} | {rate:,.0f} |')
  best = {name: rate for name, workers, rate in rows if workers in (0, '-')}
  print('RESULT (workers 0 / cache): ' + '; '.join(
      f'{name} {rate:,.0f} img/s' for name, rate in best.items()))


if __name__ == '__main__':
  app.run(main)
