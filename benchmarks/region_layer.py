r"""Times the DRML region layer's per-patch conv formulations.

For each implementation in au_jax.models.layers.IMPLEMENTATIONS: compile
time of a jitted forward + backward (gradients w.r.t. the parameters and the
input, batch-norm statistics updated as in training), then the minimum over
--repeats of the mean time of --steps calls, as ms per call and img/s.

  PYTHONPATH=. python benchmarks/region_layer.py --batch_size=16 \
      --steps=3 --repeats=5

Measured 2026-11-21 on the shared 2-core CPU (other engineers' jobs running,
so noisy; minimum of 5 repeats), batch 16, 160x160x32, 8x8 grid:
see the table in the module docstring of au_jax/models/layers.py.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from au_jax.models import layers
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per call.')
_SIZE = flags.DEFINE_integer('size', 160, 'Input height = width (conv1 map).')
_CHANNELS = flags.DEFINE_integer('channels', 32, 'Channels C.')
_GRID = flags.DEFINE_integer('grid', 8, 'Patches per side.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed calls per repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Repeats; the minimum counts.')
_IMPLEMENTATIONS = flags.DEFINE_list(
    'implementations', None,
    'Which formulations to time. Default: all, except that on CPU '
    "'grouped' must be named explicitly (about 4 minutes per call there).")
_FORWARD_ONLY = flags.DEFINE_bool(
    'forward_only', False, 'Time the inference forward pass instead.')


def benchmark(implementation: str) -> dict[str, float]:
  """Returns compile seconds, ms per call (min over repeats) and img/s."""
  layer = layers.RegionLayer(grid=(_GRID.value, _GRID.value),
                             implementation=implementation)
  shape = (_BATCH.value, _SIZE.value, _SIZE.value, _CHANNELS.value)
  x = jax.random.normal(jax.random.key(0), shape)
  cotangent = jax.random.normal(jax.random.key(1), shape)
  variables = layer.init(jax.random.key(2), x, train=False)

  if _FORWARD_ONLY.value:
    def step(variables, x, cotangent):
      del cotangent
      return layer.apply(variables, x, train=False)
  else:
    # The cotangent is an argument, not a closed-over constant, so XLA does
    # not spend compile time constant-folding it.
    def step(variables, x, cotangent):
      def loss_fn(params, x):
        out, updates = layer.apply(
            {'params': params, 'batch_stats': variables['batch_stats']}, x,
            train=True, mutable=['batch_stats'])
        return jnp.vdot(out, cotangent), updates
      grads, updates = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)(
          variables['params'], x)
      return grads, updates

  start = time.perf_counter()
  compiled = jax.jit(step).lower(variables, x, cotangent).compile()
  compile_s = time.perf_counter() - start
  best = timing.best_seconds(compiled, variables, x, cotangent,
                             calls=_STEPS.value, repeats=_REPEATS.value)
  return {'compile_s': compile_s, 'ms': 1e3 * best,
          'img_per_s': _BATCH.value / best}


def main(argv):
  del argv
  mode = 'forward' if _FORWARD_ONLY.value else 'forward+backward'
  print(f'device: {jax.devices()[0].device_kind} ({jax.default_backend()}); '
        f'{mode}, batch {_BATCH.value}, {_SIZE.value}x{_SIZE.value}x'
        f'{_CHANNELS.value}, grid {_GRID.value}x{_GRID.value}')
  implementations = _IMPLEMENTATIONS.value
  if implementations is None:
    implementations = [name for name in layers.IMPLEMENTATIONS
                       if name != 'grouped' or jax.default_backend() != 'cpu']
    if 'grouped' not in implementations:
      print("(skipping 'grouped' on CPU: ~4 min per call; name it in "
            '--implementations to time it)')
  print(f'{"implementation":>14} {"compile s":>10} {"ms/call":>9} '
        f'{"img/s":>8}')
  for implementation in implementations:
    r = benchmark(implementation)
    print(f'{implementation:>14} {r["compile_s"]:10.1f} {r["ms"]:9.1f} '
          f'{r["img_per_s"]:8.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
