r"""DRML's convolutions on CPU: one XLA conv vs channel blocks vs PyTorch.

  PYTHONPATH=. python benchmarks/cpu_conv.py [--batch_size=32] [--more]

Forward only, float32, ms per face at --batch_size, for DRML's conv1 and
conv4 at the CPU config's size (90x90 input) and the whole DRML forward
(au_jax/models/conv.py: 'xla' = one lax conv, 'blocked' = 16x16 channel
blocks, the CPU default), next to torch.nn.functional.conv2d of the same
layer (a torch whole-DRML forward is not rebuilt here;
benchmarks/drml_vs_torch.py has the train step). Best of --repeats windows.

Measured 2026-11-28, this 2-core AMD EPYC, idle (the one other job paused),
torch 2.13 CPU in the same run:
  layer                            xla    blocked  torch
  conv1 90x90x3 11x11 -> 32      12.49     1.95     1.24
  conv4 40x40x32 8x8 -> 16        5.78     0.59     0.34
  DRML forward (90x90, 12 AUs)   20.58     5.06      -
Blocking closes most of XLA:CPU's gap to torch (oneDNN) on these layers;
torch stays ~1.6x faster per layer. --more adds one conv's GFLOP/s over
channel counts and the forward + backward / region / VGG comparisons
quoted in models/conv.py (figures in benchmarks/README.md).
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from au_jax.models import conv
from au_jax.models import drml
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch_size', 32, 'Faces per call.')
_MORE = flags.DEFINE_boolean(
    'more', False, 'Also: GFLOP/s of one XLA conv over channel counts, DRML '
    'forward + backward, the region layer patch convs and VGG-16 at width '
    '1/8 (64 px), one conv vs blocked.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timing windows (best kept).')
_CALLS = flags.DEFINE_integer('calls', 5, 'Calls per window.')

LAYERS = (  # name, input size, C_in, kernel, C_out
    ('conv1 90x90x3 11x11 -> 32', 90, 3, 11, 32),
    ('conv4 40x40x32 8x8 -> 16', 40, 32, 8, 16),
)


def best_ms(fn, *args) -> float:
  return 1000 * timing.best_seconds(fn, *args, calls=_CALLS.value,
                                    repeats=_REPEATS.value)


def torch_ms(x: np.ndarray, kernel: np.ndarray) -> float | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  tw = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
  with torch.no_grad():  # CPU tensors: conv2d is synchronous.
    best = timing.best_seconds(torch.nn.functional.conv2d, tx, tw,
                               calls=_CALLS.value, repeats=_REPEATS.value,
                               sync=None)
  return 1000 * best


def main(argv):
  del argv
  batch = _BATCH.value
  rng = np.random.default_rng(0)
  print(f'device: {jax.devices()[0].device_kind}, batch {batch}, float32, '
        'ms per face (forward)')
  print(f'{"":32s} {"xla":>8s} {"blocked":>8s} {"torch":>8s}')
  for name, size, cin, k, cout in LAYERS:
    x = rng.standard_normal((batch, size, size, cin)).astype(np.float32)
    kernel = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    xla = jax.jit(lambda x, w: conv._conv(x, w, (1, 1), 'VALID'))  # pylint: disable=protected-access
    blocked = jax.jit(lambda x, w: conv.blocked_conv(x, w))
    times = [best_ms(f, jnp.asarray(x), jnp.asarray(kernel)) / batch
             for f in (xla, blocked)]
    reference = torch_ms(x, kernel)
    torch_text = '-' if reference is None else f'{reference / batch:.2f}'
    print(f'{name:32s} {times[0]:8.2f} {times[1]:8.2f} {torch_text:>8s}')
  images = {'image': jnp.asarray(
      rng.standard_normal((batch, 90, 90, 3)).astype(np.float32))}
  row = []
  for implementation in ('xla', 'blocked'):
    model = drml.Model(num_aus=12, conv_implementation=implementation)
    variables = model.init(jax.random.key(0), images, train=False)
    forward = jax.jit(lambda v, b, m=model: m.apply(v, b, train=False)[0])
    row.append(best_ms(forward, variables, images) / batch)
  print(f'{"DRML forward (90x90, 12 AUs)":32s} {row[0]:8.2f} {row[1]:8.2f} '
        f'{"-":>8s}')
  if _MORE.value:
    more()


def more() -> None:
  """The side measurements quoted in models/conv.py and the README."""
  # pylint: disable=g-import-not-at-top
  from au_jax.models import layers
  from au_jax.models import vgg
  batch = _BATCH.value
  rng = np.random.default_rng(0)
  print('one XLA conv, GFLOP/s (batch, VALID, stride 1):')
  xla = jax.jit(lambda x, w: conv._conv(x, w, (1, 1), 'VALID'))  # pylint: disable=protected-access
  for size, cin, k, cout in ((40, 16, 8, 16), (40, 32, 8, 16), (40, 32, 8, 32),
                             (90, 3, 11, 16), (90, 3, 11, 32)):
    x = jnp.asarray(rng.standard_normal((batch, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.float32)
    flops = 2 * batch * (size - k + 1) ** 2 * k * k * cin * cout
    print(f'  {size}x{size}x{cin} {k}x{k} -> {cout}: '
          f'{flops / best_ms(xla, x, w) / 1e6:.1f}')
  images = jnp.asarray(rng.standard_normal((batch, 90, 90, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 2, (batch, 12)), jnp.float32)
  row = []
  for implementation in ('xla', 'blocked'):
    model = drml.Model(num_aus=12, conv_implementation=implementation)
    variables = model.init(jax.random.key(0), {'image': images}, train=False)

    def loss(params, m=model, v=variables):
      logits, _ = m.apply({'params': params, 'batch_stats': v['batch_stats']},
                          {'image': images}, train=True,
                          mutable=['batch_stats'],
                          rngs={'dropout': jax.random.key(1)})[0]
      return jnp.mean((logits - labels) ** 2)
    row.append(best_ms(jax.jit(jax.grad(loss)), variables['params']))
  print(f'DRML forward + backward, ms per batch of {batch}: xla {row[0]:.0f}, '
        f'blocked {row[1]:.0f}')
  patches = jnp.asarray(rng.standard_normal((8, 8, batch, 10, 10, 32)),
                        jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((8, 8, 3, 3, 32, 32)), jnp.float32)
  blocked = jax.jit(lambda z, w: jnp.stack([jnp.stack([
      conv.blocked_conv(z[i, j], w[i, j], padding='SAME') for j in range(8)])
                                            for i in range(8)]))
  unrolled = jax.jit(layers._patch_conv_unrolled)  # pylint: disable=protected-access
  print(f'region layer patch convs (8x8 grid, 10x10x32 -> 32), ms per face: '
        f'unrolled {best_ms(unrolled, patches, kernel) / batch:.2f}, '
        f'blocked {best_ms(blocked, patches, kernel) / batch:.2f}')
  faces = jnp.asarray(rng.standard_normal((batch, 64, 64, 3)), jnp.float32)
  row = []
  original = vgg.nn.Conv
  try:
    for implementation in ('xla', 'blocked'):
      vgg.nn.Conv = lambda *a, i=implementation, **k: conv.Conv(
          *a, implementation=i, **k)
      encoder = vgg.Encoder(16, 1 / 8)
      params = encoder.init(jax.random.key(0), faces)['params']
      grad = jax.jit(jax.grad(lambda p, e=encoder: jnp.mean(
          e.apply({'params': p}, faces) ** 2)))
      row.append(best_ms(grad, params))
  finally:
    vgg.nn.Conv = original
  print(f'VGG-16 encoder at width 1/8, 64 px, forward + backward, ms per '
        f'batch: xla {row[0]:.0f}, blocked {row[1]:.0f}')


if __name__ == '__main__':
  app.run(main)
