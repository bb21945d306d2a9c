r"""The real trainer's steady-state images/s next to its bare step's.

trainer  `train.train_fold(config, workdir, fold=1)` run twice in fresh
         work dirs, for --warmup_steps and for --warmup_steps + --steps;
         the difference of the wall times is --steps steady-state steps
         (compile, dataset opening, validation and test cancel out: both
         runs do them once, with validation only at the last step).
bare     `train.train_step` under `parallel.pmap_step`, state and one batch
         from the same config's loader resident on the devices, timed over
         --steps steps after one compile call.

Only public functions are called, so the script follows train.py when its
batches change (e.g. uint8 with device-side augmentation): the bare step is
fed whatever `input_pipeline.train_loader` yields.

  PYTHONPATH=. python benchmarks/train_throughput.py --config=configs/drml.py \
      --config.data_dir=/tmp/tfds_bench --steps=10 --warmup_steps=3

Prints the machine, versions, both rates and their ratio (goal >= 0.9).
Figures: benchmarks/README.md.
"""

import functools
import os
import platform
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from au_jax.data import input_pipeline
from au_jax import models
from au_jax import parallel
from au_jax import train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/drml.py')
_STEPS = flags.DEFINE_integer('steps', 10, 'Steady-state steps timed.')
_WARMUP = flags.DEFINE_integer('warmup_steps', 3, 'Steps of the short run.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Scratch (default: a tmp dir).')


def machine() -> str:
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
  import flax  # pylint: disable=g-import-not-at-top
  return (f'{platform.node()} {platform.machine()}, {os.cpu_count()} cores '
          f'(load {load:.1f}), {jax.local_device_count()} x '
          f'{jax.devices()[0].device_kind}; Python '
          f'{platform.python_version()}, jax {jax.__version__}, flax '
          f'{flax.__version__}')


def run_trainer(config, steps: int, workdir: str) -> float:
  config = config.copy_and_resolve_references()
  config.num_train_steps = steps
  config.log_every_steps = steps
  config.eval_every_steps = steps  # validation once, at the last step
  config.checkpoint_every_steps = steps
  config.progress_bar = False
  start = time.perf_counter()
  train.train_fold(config, workdir, 1)
  return time.perf_counter() - start


def bare_step(config, steps: int) -> float:
  """Images/s of the pmapped train step on a device-resident batch."""
  data = input_pipeline.fold_data(config, input_pipeline.open_dataset(config),
                                  1)
  batch = next(iter(input_pipeline.train_loader(config, data, seed=1)))
  # Already-sharded device batches (a device cache) pass through as they are.
  if not all(isinstance(v, jax.Array) for v in batch.values()):
    batch = parallel.shard(batch)
  model = models.create(config, axis_name=parallel.AXIS_NAME)
  state = train.create_train_state(config, model, jax.random.key(0))
  p_state = parallel.replicate(state)
  p_rng = parallel.replicate(jax.random.key(1))
  p_step = parallel.pmap_step(functools.partial(train.train_step,
                                                config=config))
  p_batch = jax.pmap(lambda x: x)(batch)  # resident on the devices
  p_state, metrics = p_step(p_state, p_batch, p_rng)  # compile
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    p_state, metrics = p_step(p_state, p_batch, p_rng)
  jax.block_until_ready((p_state, metrics))
  return steps * config.batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  print(machine())
  print(f'config: {config.model_name} {config.crop_size}px, batch '
        f'{config.batch_size}, dtype {config.get("dtype", "float32")}, '
        f'cache {config.get("cache")}, workers {config.num_workers}')
  with tempfile.TemporaryDirectory(dir=_WORKDIR.value) as scratch:
    short = run_trainer(config, _WARMUP.value, os.path.join(scratch, 'a'))
    long = run_trainer(config, _WARMUP.value + _STEPS.value,
                       os.path.join(scratch, 'b'))
  trainer = _STEPS.value * config.batch_size / max(long - short, 1e-9)
  print(f'trainer runs: {_WARMUP.value} steps {short:.1f} s, '
        f'{_WARMUP.value + _STEPS.value} steps {long:.1f} s')
  bare = bare_step(config, _STEPS.value)
  print(f'RESULT trainer {trainer:,.1f} img/s, bare step {bare:,.1f} img/s, '
        f'ratio {trainer / bare:.2f} (goal >= 0.90)')


if __name__ == '__main__':
  app.run(main)
