r"""AUNets flow: computed in the input pipeline vs stored by the builder.

This measures both ways of giving AUNets its flow image
(batch["flow"]), to choose one. On fold 1's training split of
`synthetic_au/default` with `configs/aunets.py:cpu-channels` (128 px faces
resized to 72, crop 64, batch 32, DIS flow), this times:

  host     per frame on the host: the RGB-only record read + resize, the
           flow computed from the neighbouring record
           (input_pipeline._FlowSource: a second record decode, DIS, the
           encoding, a resize), and a stored flow image read back (emulated:
           the same flow images PNG-encoded once, decoded + resized per
           read, as a builder feature would be);
  build    what storing costs: flow + PNG encode per frame, times the
           dataset's frames (build time), and the PNG bytes (disk), beside
           the dataset's own size;
  train    training img/s of the Channels model, host and step in one loop
           (grain loader, workers 0, then the pmapped train step), with the
           flow computed vs stored.

  PYTHONPATH=. python benchmarks/aunets_flow.py --data_dir=~/tensorflow_datasets

Prints the machine, one row per measurement and a one-line RESULT.
"""

import functools
import os
import platform
import time

from absl import app
from absl import flags
from absl import logging
import cv2
import grain
import jax
import numpy as np

from au_jax.data import input_pipeline
from au_jax import models
from au_jax import parallel
from au_jax import train
from au_jax.preprocess import flow as flow_lib
from configs import aunets as aunets_config

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir.')
_RECORDS = flags.DEFINE_integer('records', 192, 'Frames timed on the host.')
_STEPS = flags.DEFINE_integer('steps', 6, 'Timed training steps per way.')


class _StoredFlow:
  """Emulates a builder feature: flow images PNG-encoded once, decoded and
  resized at each read."""

  def __init__(self, source, pngs: dict[int, bytes], size: int):
    self._source, self._pngs, self._size = source, pngs, size

  def __len__(self):
    return len(self._pngs)

  def __getitem__(self, index):
    record = dict(self._source[index])
    image = cv2.imdecode(np.frombuffer(self._pngs[index], np.uint8),
                         cv2.IMREAD_COLOR)[..., ::-1]
    record['flow'] = cv2.resize(image, (self._size, self._size),
                                interpolation=cv2.INTER_LINEAR)
    return record


def _per_frame(read, count: int) -> float:
  start = time.perf_counter()
  for index in range(count):
    read(index)
  return (time.perf_counter() - start) / count


def _train_img_s(config, source, steps: int) -> float:
  data = input_pipeline.fold_data(config, input_pipeline.open_dataset(config),
                                  1)
  loader = grain.DataLoader(
      data_source=source,
      sampler=grain.samplers.IndexSampler(
          num_records=len(source), shuffle=True, num_epochs=None, seed=0,
          shard_options=grain.sharding.NoSharding()),
      operations=input_pipeline._record_transforms(config, data, True) + [  # pylint: disable=protected-access
          grain.transforms.Batch(config.batch_size, drop_remainder=True)],
      worker_count=0)
  iterator = iter(loader)
  model = models.create(config, axis_name=parallel.AXIS_NAME)
  state = parallel.replicate(train.create_train_state(
      config, model, jax.random.key(0)))
  rng = parallel.replicate(jax.random.key(1))
  step = parallel.pmap_step(functools.partial(train.train_step,
                                              config=config))
  state, metrics = step(state, parallel.shard(next(iterator)), rng)
  jax.block_until_ready(metrics)  # Compiled.
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, parallel.shard(next(iterator)), rng)
  jax.block_until_ready(metrics)
  return steps * config.batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  load = os.getloadavg()[0]
  print(f'{platform.node()}, {os.cpu_count()} cores (load {load:.1f}), '
        f'{jax.devices()[0].device_kind}; jax {jax.__version__}, OpenCV '
        f'{cv2.__version__}')
  config = aunets_config.get_config('cpu-channels')
  config.data_dir = os.path.expanduser(_DATA_DIR.value or '') or None
  config.init_from = None
  config.aus = (12,)
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, 1)
  computed = input_pipeline.split_source(data, 'train')
  plain = builder.as_data_source(split='+'.join(data.subjects.train))
  count = min(_RECORDS.value, len(plain))
  size = config.resize_size

  rgb = _per_frame(lambda i: cv2.resize(plain[i]['image'], (size, size)),
                   count)
  flow = _per_frame(lambda i: computed[i], count)
  pngs, encode_start = {}, time.perf_counter()
  for index in range(count):
    record = computed._source[index]  # pylint: disable=protected-access
    first, second = computed._first[index], computed._second[index]  # pylint: disable=protected-access
    image = flow_lib.flow_image(
        plain[int(first)]['image'] if first != index else record['image'],
        None if first == second else plain[int(second)]['image'])
    pngs[index] = cv2.imencode('.png', image[..., ::-1])[1].tobytes()
  build = (time.perf_counter() - encode_start) / count
  stored = _StoredFlow(plain, pngs, size)
  read_stored = _per_frame(lambda i: stored[i], count)
  frames = sum(s.num_examples for s in builder.info.splits.values())
  png_bytes = np.mean([len(p) for p in pngs.values()])
  dataset_bytes = sum(
      os.path.getsize(os.path.join(builder.data_dir, f))
      for f in os.listdir(builder.data_dir))
  print(f'host ms/frame ({count} frames): RGB read+resize {1e3 * rgb:.2f}; '
        f'+ flow computed {1e3 * flow:.2f}; + flow stored (PNG decode) '
        f'{1e3 * read_stored:.2f}')
  print(f'build (stored): {1e3 * build:.2f} ms/frame x {frames} frames = '
        f'{build * frames:.0f} s (+ decode); disk {png_bytes / 1e3:.1f} kB/'
        f'frame = {png_bytes * frames / 1e6:.0f} MB beside the dataset\'s '
        f'{dataset_bytes / 1e6:.0f} MB')

  subset = input_pipeline._Subset(computed, np.arange(count))  # pylint: disable=protected-access
  train_computed = _train_img_s(config, subset, _STEPS.value)
  train_stored = _train_img_s(config, stored, _STEPS.value)
  print(f'train img/s (Channels, batch {config.batch_size}, workers 0): '
        f'flow computed {train_computed:.1f}, stored {train_stored:.1f}')
  print(f'RESULT flow computed {1e3 * (flow - rgb):.2f} ms/frame extra on '
        f'the host vs stored {1e3 * (read_stored - rgb):.2f}; training '
        f'{train_computed:.1f} vs {train_stored:.1f} img/s; storing costs '
        f'{build * frames:.0f} s build and {png_bytes * frames / 1e6:.0f} MB')


if __name__ == '__main__':
  app.run(main)
