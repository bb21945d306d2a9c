r"""IdenNet train-step throughput: au_jax (JAX/flax) vs a PyTorch reference.

Both sides run the same network (LightCNN-4 trunk with MFM and Caffe ceil
pooling, fc5 MFM embedding L2-normalised, fc6 MFM, classifier on fc6 - fc5)
and the same losses (AU sigmoid cross-entropy with -1 ignored over the AU
rows + the ranking loss, margin 0.5, hardest 2 + random 2 negatives) on the
same mixed batch (half AU frames, half same-identity pairs), with Adam
(lr 1e-4) and L2 weight decay 5e-4. One process, windows interleaved, so both
see the same machine load. The PyTorch side is a benchmark-only reference
(torch is not an au_jax dependency).

  PYTHONPATH=. python benchmarks/idennet_throughput.py --input_size=128 \
      --batch_size=32 --steps=3 --repeats=3

Prints images/s of a full train step (forward, backward, update) as the best
of --repeats windows of --steps steps each.

Measured on the shared 2-core CPU (XLA:CPU and PyTorch 2.13 CPU, float32,
12 AUs, RGB) on a shared machine, so both numbers are low and noisy; the ratio is the useful part:
  64x64, batch 32 (configs/idennet.py CPU job), --steps=3 --repeats=3:
    jax 5.4 img/s (compile 22 s), torch 9.9 img/s
  128x128, batch 16 (paper input), --steps=2 --repeats=2:
    jax 0.7 img/s (compile 38 s), torch 1.7 img/s
No GPU was lent to this task, so there are no GPU figures.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from au_jax.methods import idennet as method
from au_jax.models import idennet

_BATCH = flags.DEFINE_integer('batch_size', 32, 'Rows per step (half AU '
                              'frames, half identity faces in pairs).')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps per window.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Windows; the best counts.')
_SIZE = flags.DEFINE_integer('input_size', 64, 'Input height = width.')
_NUM_AUS = flags.DEFINE_integer('num_aus', 12, 'Outputs (BP4D: 12).')
_TORCH = flags.DEFINE_bool('torch', True, 'Also time the PyTorch reference.')


def make_batch(batch_size: int, size: int, num_aus: int) -> dict:
  rng = np.random.default_rng(0)
  pairs = batch_size // 4
  au_rows = batch_size - 2 * pairs
  identity = np.r_[np.full(au_rows, -1), np.repeat(np.arange(pairs), 2)]
  labels = rng.integers(-1, 2, size=(batch_size, num_aus))
  labels[au_rows:] = -1
  return {
      'image': rng.normal(size=(batch_size, size, size, 3)).astype(np.float32),
      'au_occurrence': labels.astype(np.int32),
      'identity': identity.astype(np.int32),
      'is_identity_row': identity >= 0,
      'triplet_seed': np.zeros([batch_size], np.int32),
  }


def jax_step(batch: dict, num_aus: int):
  model = idennet.Model(num_aus=num_aus)
  config = ml_collections.ConfigDict(dict(
      triplet_margin=0.5, num_negatives=4, triplet_weight=1.0,
      au_loss_weight=1.0, seed=0))
  params = model.init(jax.random.key(0), batch, train=False)['params']
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.adam(1e-4))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss(params):
      outputs = model.apply({'params': params}, batch, train=True)
      return method.loss_fn(outputs, batch, config)[0]
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  batch = jax.device_put(batch)
  start = time.perf_counter()
  state = step(params, opt_state, batch)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start

  def run():
    nonlocal state
    state = step(state[0], state[1], batch)
    jax.block_until_ready(state)
  return run, compile_s


def torch_step(batch: dict, num_aus: int, size: int):
  """The same network and losses in PyTorch (NCHW)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  def mfm(x, dim=1):
    a, b = torch.chunk(x, 2, dim=dim)
    return torch.maximum(a, b)

  side = size
  for kernel in (9, 5, 5, 4):
    side = -(-(side - kernel + 1) // 2)

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.convs = nn.ModuleList([
          nn.Conv2d(3, 96, 9), nn.Conv2d(48, 192, 5), nn.Conv2d(96, 256, 5),
          nn.Conv2d(128, 384, 4)])
      self.fc5 = nn.Linear(side * side * 192, 512)
      self.fc6 = nn.Linear(side * side * 192, 512)
      self.output = nn.Linear(256, num_aus)

    def forward(self, x):
      for conv in self.convs:
        x = mfm(F.max_pool2d(conv(x), 2, 2, ceil_mode=True))
      x = x.flatten(1)
      embedding = F.normalize(mfm(self.fc5(x)), dim=1)
      return self.output(mfm(self.fc6(x)) - embedding), embedding

  net = Net()
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=5e-4)
  image = torch.from_numpy(batch['image']).permute(0, 3, 1, 2).contiguous()
  labels = torch.from_numpy(batch['au_occurrence']).float()
  identity = torch.from_numpy(batch['identity'])
  au_rows = torch.from_numpy(~batch['is_identity_row']).float()
  known = identity >= 0
  same = identity[:, None] == identity[None]
  positive = (known[:, None] & known[None] & same
              & ~torch.eye(len(identity), dtype=torch.bool)).float()
  negative = known[:, None] & known[None] & ~same

  def loss_fn():
    logits, embedding = net(image)
    mask = (labels >= 0).float()
    bce = F.binary_cross_entropy_with_logits(
        logits, labels.clamp(min=0), reduction='none') * mask
    au_loss = (bce.sum(1) * au_rows).sum() / au_rows.sum().clamp(min=1)
    similarity = embedding @ embedding.T
    with torch.no_grad():
      hard = similarity.masked_fill(~negative, -float('inf')).topk(2, 1)
      chosen = torch.zeros_like(similarity).scatter(
          1, hard.indices, (hard.values > -float('inf')).float())
      draws = torch.rand_like(similarity).masked_fill(
          ~negative | (chosen > 0), -float('inf')).topk(2, 1)
      chosen.scatter_add_(1, draws.indices,
                          (draws.values > -float('inf')).float())
    hinge = F.relu(0.5 - similarity[:, :, None] + similarity[:, None, :])
    weight = positive[:, :, None] * chosen[:, None, :]
    triplet = (hinge * weight).sum() / weight.sum().clamp(min=1)
    return au_loss + triplet

  def run():
    optimizer.zero_grad(set_to_none=True)
    loss_fn().backward()
    optimizer.step()
  return run


def best_rate(run, batch_size: int, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    run()
  return batch_size * steps / (time.perf_counter() - start)


def main(argv):
  del argv
  batch = make_batch(_BATCH.value, _SIZE.value, _NUM_AUS.value)
  runs = {}
  runs['jax'], compile_s = jax_step(batch, _NUM_AUS.value)
  print(f'jax compile {compile_s:.1f} s on {jax.devices()[0].platform}')
  if _TORCH.value:
    runs['torch'] = torch_step(batch, _NUM_AUS.value, _SIZE.value)
    runs['torch']()  # warm-up
  rates = {name: 0.0 for name in runs}
  for _ in range(_REPEATS.value):
    for name, run in runs.items():
      rates[name] = max(rates[name], best_rate(run, _BATCH.value,
                                               _STEPS.value))
  for name, rate in rates.items():
    print(f'{name}: train {rate:.1f} img/s ({_SIZE.value}x{_SIZE.value}, '
          f'batch {_BATCH.value})')


if __name__ == '__main__':
  app.run(main)
