r"""Training step time over 1, 2, 4, 8 devices, and over 2 processes.

Each layout runs in a fresh child process (the CPU device count is fixed at
JAX start-up; XLA_FLAGS=--xla_force_host_platform_device_count=N):
`train.train_step` under `parallel.pmap_step` on the same global batch
(config.batch_size random uint8 faces + labels, so the device-side crop,
mirror and normalisation run as in training), timed over --steps steps
after a compile call and one warm-up step. The `2x4` row is the
multi-process path: two processes joined with `jax.distributed` on a
loopback port (au_jax/distributed.py, gloo collectives), each feeding its
half of the global batch to its 4 devices.

On a CPU the "devices" are threads of one machine, so this checks the code
path and its overhead, not a speed-up; on GPUs (one process per node, or
`--layouts=1,2,4,8` on an 8-GPU node) it measures scaling efficiency.

  PYTHONPATH=. python benchmarks/scaling.py --config=configs/drml.py \
      --steps=5 --layouts=1,2,4,8,2x4

Prints the machine, one row per layout (ms/step, images/s, relative to the
first row, compile s) and a RESULT line. Figures: benchmarks/README.md and
README "Scaling out".
"""

import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/drml.py')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per layout.')
_LAYOUTS = flags.DEFINE_list(
    'layouts', ['1', '2', '4', '8', '2x4'],
    "Device counts ('N': one process, N devices) or 'PxN' (P processes of N "
    'devices each, joined on loopback).')
_CHILD = flags.DEFINE_string('child', None, 'Internal: PxN,process_id,port.')
_TIMEOUT = flags.DEFINE_integer('timeout_s', 1800, 'Per layout.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(layout: str) -> tuple[int, int]:
  processes, _, devices = layout.rpartition('x')
  return int(processes or 1), int(devices)


def _child(spec: str) -> None:
  layout, process_id, port = spec.split(',')
  processes, _ = _parse(layout)
  from au_jax import distributed  # pylint: disable=g-import-not-at-top
  if processes > 1:
    distributed.initialize(f'127.0.0.1:{port}', processes, int(process_id))
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from au_jax import models, parallel, train  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  model = models.create(config, axis_name=parallel.AXIS_NAME)
  state = parallel.replicate(
      train.create_train_state(config, model, jax.random.key(0)))
  # The same global batch in every layout; each process takes its rows.
  rng, size = np.random.default_rng(0), config.batch_size
  rows = slice(jax.process_index() * size // jax.process_count(),
               (jax.process_index() + 1) * size // jax.process_count())
  batch = parallel.to_devices(parallel.shard({
      'image': rng.integers(0, 256, (size, config.resize_size,
                                     config.resize_size, 3), np.uint8)[rows],
      'landmarks': rng.uniform(0, config.resize_size,
                               (size, 68, 2)).astype(np.float32)[rows],
      'au_occurrence': rng.integers(0, 2, (size, len(config.aus)),
                                    np.int32)[rows],
  }))
  step = parallel.pmap_step(functools.partial(train.train_step,
                                              config=config))
  p_rng = parallel.replicate(jax.random.key(1))
  start = time.perf_counter()
  state, metrics = step(state, batch, p_rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  state, metrics = step(state, batch, p_rng)  # Warm-up.
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = step(state, batch, p_rng)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / _STEPS.value
  if jax.process_index() == 0:
    print('ROW ' + json.dumps({
        'layout': layout, 'processes': jax.process_count(),
        'devices': jax.device_count(), 'ms_per_step': 1000 * seconds,
        'images_per_second': config.batch_size / seconds,
        'compile_s': compile_s,
        'device_kind': jax.devices()[0].device_kind}), flush=True)


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def _run_layout(layout: str, argv: list[str]) -> dict:
  processes, devices = _parse(layout)
  port = _free_port()
  env = dict(os.environ,
             PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  if env.get('JAX_PLATFORMS', 'cpu') == 'cpu':
    env['JAX_PLATFORMS'] = 'cpu'
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                        f' --xla_force_host_platform_device_count={devices}')
  children = [subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, __file__, *argv, f'--child={layout},{index},{port}'],
      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True) for index in range(processes)]
  outputs = []
  try:
    for child in children:
      outputs.append(child.communicate(timeout=_TIMEOUT.value))
  finally:
    for child in children:
      if child.poll() is None:
        child.kill()
        child.wait()
  for child, (_, err) in zip(children, outputs):
    if child.returncode:
      raise RuntimeError(f'layout {layout} failed (rc {child.returncode}):\n'
                         f'{err[-3000:]}')
  rows = [l for out, _ in outputs for l in out.splitlines()
          if l.startswith('ROW ')]
  return json.loads(rows[0][4:])


def main(argv):
  if _CHILD.value:
    _child(_CHILD.value)
    return
  passed = [a for a in sys.argv[1:] if not a.startswith('--layouts')]
  load = os.getloadavg()[0]
  print(f'{platform.node()} {platform.machine()}, {os.cpu_count()} cores '
        f'(load {load:.1f}); config batch {_CONFIG.value.batch_size}, '
        f'{_STEPS.value} timed steps')
  rows = [_run_layout(layout, passed) for layout in _LAYOUTS.value]
  base = rows[0]['ms_per_step']
  print('| layout | processes | devices | ms/step | images/s | vs first '
        '| compile s |')
  print('|---|---:|---:|---:|---:|---:|---:|')
  for row in rows:
    print(f"| {row['layout']} | {row['processes']} | {row['devices']} | "
          f"{row['ms_per_step']:.0f} | {row['images_per_second']:.1f} | "
          f"{base / row['ms_per_step']:.2f}x | {row['compile_s']:.1f} |")
  print('RESULT ' + ', '.join(
      f"{r['layout']}: {r['ms_per_step']:.0f} ms/step" for r in rows)
        + f" ({rows[0]['device_kind']}, load {os.getloadavg()[0]:.1f})")
  del argv


if __name__ == '__main__':
  app.run(main)
