r"""DRML train step: au_jax (JAX) against a PyTorch DRML of the same layers.

Both sides: the same layer table (au_jax/models/drml.py; parameter counts
printed and checked equal), synthetic images and labels resident on the
device, sigmoid cross-entropy with -1 masked, divided by the batch, SGD
momentum 0.9 with weight decay 5e-4 (the authors' solver). PyTorch runs
eager and `torch.compile`d, its region layer as ONE grouped conv (patches
moved into 64 channel groups, per-patch batch-norm as a BatchNorm2d over
the 64 x C grouped channels); au_jax runs each --implementations entry
('auto' = the backend's default). --dtypes bfloat16 uses au_jax's compute
dtype and torch.autocast.

PyTorch is a benchmark-only extra, never an au_jax dependency.

  PYTHONPATH=. python benchmarks/drml_vs_torch.py --input_size=170 \
      --batch_size=128 --dtypes=float32,bfloat16 \
      --implementations=unrolled,grouped        # on a GPU
  PYTHONPATH=. python benchmarks/drml_vs_torch.py --input_size=90 \
      --batch_size=16 --steps=3 --dtypes=float32  # the 2-core CPU

Prints the machine, versions, one row per (framework, mode, dtype) and a
one-line result: au_jax's best over torch.compile per dtype (goal on GPU:
>= 1.3). Figures: benchmarks/README.md.
"""

import os
import platform

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from au_jax import losses
from au_jax.models import drml
from au_jax.models import layers
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per step.')
_SIZE = flags.DEFINE_integer('input_size', 170, 'Input side (DRML: 170).')
_NUM_AUS = flags.DEFINE_integer('num_aus', 12, 'Outputs (BP4D: 12).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per window.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Windows; the best counts.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'],
                            'Compute dtypes.')
_IMPLEMENTATIONS = flags.DEFINE_list(
    'implementations', ['auto'], 'au_jax region layer formulations.')
_TORCH_MODES = flags.DEFINE_list('torch_modes', ['eager', 'compile'],
                                 "PyTorch modes ('eager', 'compile').")


def machine() -> str:
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch_version = torch.__version__
  except ImportError:
    torch_version = 'not installed'
  return (f'{platform.node()} {platform.machine()}, {os.cpu_count()} cores '
          f'(load {load:.1f}), {jax.devices()[0].device_kind}; Python '
          f'{platform.python_version()}, jax {jax.__version__}, torch '
          f'{torch_version}')


def _best_rate(step, *args) -> float:
  """Best images/s over the windows, after one warm-up (compile) call.

  `step` waits for its own result on every call (block_until_ready, or
  torch.cuda.synchronize on CUDA), so the timing loop adds no sync.
  """
  return _BATCH.value / timing.best_seconds(
      step, *args, calls=_STEPS.value, repeats=_REPEATS.value, sync=None)


def jax_rate(implementation: str, dtype: str) -> tuple[float, int]:
  model = drml.Model(num_aus=_NUM_AUS.value,
                     region_implementation=implementation, dtype=dtype)
  shape = (_BATCH.value, _SIZE.value, _SIZE.value, 3)
  batch = {
      'image': jax.random.normal(jax.random.key(0), shape),
      'au_occurrence': jax.random.randint(
          jax.random.key(1), (_BATCH.value, _NUM_AUS.value), -1, 2),
  }
  variables = jax.jit(lambda b: model.init(jax.random.key(2), b,
                                           train=False))(batch)
  tx = optax.chain(optax.add_decayed_weights(5e-4),
                   optax.sgd(1e-3, momentum=0.9))
  state = (variables['params'], variables['batch_stats'],
           tx.init(variables['params']))
  num_params = sum(x.size for x in jax.tree.leaves(variables['params']))

  @jax.jit
  def step(state, batch, key):
    params, stats, opt_state = state

    def loss_fn(params):
      (logits, _), updates = model.apply(
          {'params': params, 'batch_stats': stats}, batch, train=True,
          mutable=['batch_stats'], rngs={'dropout': key})
      return losses.sigmoid_cross_entropy(
          logits, batch['au_occurrence'], normalise='batch'), updates
    grads, updates = jax.grad(loss_fn, has_aux=True)(params)
    changes, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, changes), updates['batch_stats'],
            opt_state)

  holder = [state]
  key = jax.random.key(3)

  def run():
    holder[0] = step(holder[0], batch, key)
    jax.block_until_ready(holder[0])
  return _best_rate(run), num_params


def torch_model(num_aus: int, size: int, grid: int = 8):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  class Region(nn.Module):
    """Region layer as one grouped conv over the patches' channel groups."""

    def __init__(self, channels):
      super().__init__()
      self.channels, self.grid = channels, grid
      groups = grid * grid
      self.norm = nn.BatchNorm2d(groups * channels, affine=False)
      self.conv = nn.Conv2d(groups * channels, groups * channels, 3,
                            padding=1, groups=groups)

    def forward(self, x):
      b, c, h, w = x.shape
      g, ph, pw = self.grid, h // self.grid, w // self.grid
      z = x.reshape(b, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5)
      z = z.reshape(b, g * g * c, ph, pw)
      z = self.conv(F.relu(self.norm(z)))
      z = z.reshape(b, g, g, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
      return F.relu(z.reshape(b, c, h, w) + x)

  conv1 = size - 10
  side = (conv1 // 2) - 7 - 7  # conv4, conv5 (8x8 VALID)
  side = (side - 6) // 2 + 1 - 4  # conv6 6x6/2, conv7 5x5
  return nn.Sequential(
      nn.Conv2d(3, 32, 11), Region(32), nn.MaxPool2d(2),
      nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
      nn.Conv2d(32, 16, 8), nn.ReLU(), nn.Conv2d(16, 16, 8), nn.ReLU(),
      nn.Conv2d(16, 16, 6, stride=2), nn.ReLU(), nn.Conv2d(16, 16, 5),
      nn.ReLU(), nn.Flatten(), nn.Linear(16 * side * side, 4096), nn.ReLU(),
      nn.Dropout(0.5), nn.Linear(4096, 2048), nn.ReLU(), nn.Dropout(0.5),
      nn.Linear(2048, num_aus))


def torch_rate(mode: str, dtype: str) -> tuple[float, int]:
  import torch  # pylint: disable=g-import-not-at-top
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = torch_model(_NUM_AUS.value, _SIZE.value).to(device)
  num_params = sum(p.numel() for p in model.parameters())
  optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9,
                              weight_decay=5e-4)
  images = torch.randn(_BATCH.value, 3, _SIZE.value, _SIZE.value,
                       device=device)
  labels = torch.randint(-1, 2, (_BATCH.value, _NUM_AUS.value),
                         device=device)
  autocast = torch.autocast(device, dtype=torch.bfloat16,
                            enabled=dtype == 'bfloat16')

  def step():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      logits = model(images).float()
    known = labels >= 0
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels.clamp(min=0).float(), reduction='none')
    loss = (loss * known).sum() / logits.shape[0]
    loss.backward()
    optimizer.step()

  if mode == 'compile':
    step = torch.compile(step)

  def run():
    step()
    if device == 'cuda':
      torch.cuda.synchronize()
  return _best_rate(run), num_params


def main(argv):
  del argv
  print(machine())
  print(f'DRML train step, {_SIZE.value}x{_SIZE.value}, batch '
        f'{_BATCH.value}, {_NUM_AUS.value} AUs, best of {_REPEATS.value} '
        f'windows of {_STEPS.value} steps')
  rows = []
  for dtype in _DTYPES.value:
    for implementation in _IMPLEMENTATIONS.value:
      rate, count = jax_rate(implementation, dtype)
      resolved = layers.resolve_implementation(implementation)
      rows.append(('au_jax', f'{implementation} ({resolved})', dtype, rate,
                   count))
      print(*rows[-1], flush=True)
    for mode in _TORCH_MODES.value:
      rate, count = torch_rate(mode, dtype)
      rows.append(('torch', f'{mode} (grouped)', dtype, rate, count))
      print(*rows[-1], flush=True)
  counts = {row[4] for row in rows}
  if len(counts) != 1:
    raise SystemExit(f'parameter counts differ: {rows}')
  print(f'\nparameters: {counts.pop():,} on both sides')
  print('| framework | mode | dtype | images/s |\n|---|---|---|---|')
  for framework, mode, dtype, rate, _ in rows:
    print(f'| {framework} | {mode} | {dtype} | {rate:,.1f} |')
  summary = []
  for dtype in _DTYPES.value:
    ours = max(r[3] for r in rows if r[0] == 'au_jax' and r[2] == dtype)
    theirs = [r[3] for r in rows if r[0] == 'torch' and r[2] == dtype
              and r[1].startswith('compile')] or [
                  r[3] for r in rows if r[0] == 'torch' and r[2] == dtype]
    if theirs:
      summary.append(f'{dtype}: au_jax {ours:,.1f} img/s = '
                     f'{ours / max(theirs):.2f}x torch')
  print('RESULT ' + '; '.join(summary))


if __name__ == '__main__':
  app.run(main)
