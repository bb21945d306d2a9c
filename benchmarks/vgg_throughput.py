r"""VGG-16 throughput, JAX vs PyTorch, and a frozen-trunk HydraNet step.

Self-contained (does not use au_jax.train): synthetic images and labels.
  1. VGG-16 (au_jax/models/vgg.py, 8 emotion outputs as EmoNet) train step
     (forward + backward + SGD momentum 0.9, weight decay 5e-3, softmax
     cross-entropy) and eval-mode inference, in JAX (jit) and in PyTorch
     with the same layers (13 3x3 convs, 5 max-pools, fc6, fc7, output;
     dropout 0.5 in training), on one device each.
  2. HydraNet (au_jax/models/caud.py, --num_heads heads): a full step that
     trains every parameter vs the frozen-trunk step that trains the heads
     only (the trainer's way: `optim.stop_frozen_gradients` on the
     '^encoder/.*' parameters and `optim.create_optimizer` with
     config.frozen, so no weight gradient and no optimiser state exist for
     the trunk).

  PYTHONPATH=. python benchmarks/vgg_throughput.py --batch_size=8 \
      --input_size=112 --num_heads=4

Prints images/s as the best of --repeats windows of --steps steps each
(after one warm-up call).

Measured 2026-11-28 on the shared 2-core CPU (XLA:CPU and PyTorch 2.13 CPU,
float32, full-width VGG-16, batch 8, 112x112 so pool5 is 3x3 and fc6 has
4,608 inputs), noisy, best of 2 windows of 3 steps, the command above:
  VGG-16 train      JAX 1.06 img/s (7.5 s/step, compile 18 s)
                    PyTorch 1.37 img/s (5.8 s/step)
  VGG-16 inference  JAX 4.36 img/s (1.8 s/step); PyTorch 4.90 img/s (1.6 s)
  HydraNet, 4 heads (Adam): full step 0.79 img/s (10.1 s/step), frozen
  trunk 1.63 img/s (4.9 s/step): 2.1x faster; optimiser state 314,773,136
  vs 285,343,760 scalars (the difference is Adam's two moments of the
  14,714,688 trunk parameters: none are kept for the frozen trunk).
PyTorch runs with --torch_threads=1: on this oversubscribed 2-core machine
its OpenMP pool with 2 threads busy-waits, and a VGG-16 (width 1/4, 64x64,
batch 4) forward took 0.73 s with 2 threads vs 0.026 s with 1. XLA keeps
its own thread pool. No GPU was lent to this task: no GPU figures yet.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from au_jax import optim
from au_jax.models import caud
from au_jax.models import vgg
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch_size', 8, 'Images per step.')
_SIZE = flags.DEFINE_integer('input_size', 112, 'Input height = width.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps per window.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Windows; the best counts.')
_WIDTH = flags.DEFINE_float('width_multiplier', 1.0, 'VGG width multiplier.')
_HEADS = flags.DEFINE_integer('num_heads', 4, 'HydraNet heads (AUs).')
_CLASSES = 8
_TORCH = flags.DEFINE_bool('torch', True, 'Also time the PyTorch reference.')
_TORCH_THREADS = flags.DEFINE_integer(
    'torch_threads', 1, 'PyTorch intra-op threads (see the docstring).')
_PARTS = flags.DEFINE_list('parts', ['vgg', 'hydranet'],
                           'Which benchmarks: vgg, hydranet.')


def _best_seconds(step, *args) -> float:
  """Best seconds per call over the windows, after a warm-up call."""
  return timing.best_seconds(step, *args, calls=_STEPS.value,
                             repeats=_REPEATS.value)


def _report(name: str, seconds: float) -> None:
  print(f'{name:44s} {_BATCH.value / seconds:8.2f} img/s '
        f'({seconds:.3f} s/step)', flush=True)


def _jax_vgg(images, labels) -> None:
  model = vgg.Model(_CLASSES, width_multiplier=_WIDTH.value)
  params = jax.jit(lambda x: model.init(
      jax.random.key(0), {'image': x}, train=False))(images)['params']
  tx = optax.chain(optax.add_decayed_weights(5e-3),
                   optax.sgd(1e-4, momentum=0.9))
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state, images, labels, rng):
    def loss_fn(p):
      logits, _ = model.apply({'params': p}, {'image': images}, train=True,
                              rngs={'dropout': rng})
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  @jax.jit
  def infer(params, images):
    return model.apply({'params': params}, {'image': images}, train=False)[0]

  rng = jax.random.key(1)
  start = time.perf_counter()
  jax.block_until_ready(train_step(params, opt_state, images, labels, rng))
  print(f'JAX train-step compile + first step: '
        f'{time.perf_counter() - start:.1f} s', flush=True)
  # Donation is not used, so the same state can be reused every call.
  _report('VGG-16 train     JAX', _best_seconds(
      train_step, params, opt_state, images, labels, rng))
  _report('VGG-16 inference JAX', _best_seconds(infer, params, images))


def _torch_vgg(images, labels) -> None:
  import torch  # pylint: disable=g-import-not-at-top  # benchmark only
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.set_num_threads(_TORCH_THREADS.value)
  layers, channels = [], 3
  for block, count in enumerate(vgg.BLOCKS[16]):
    for _ in range(count):
      out = vgg.scaled(vgg.BLOCK_WIDTHS[block], _WIDTH.value)
      layers += [torch.nn.Conv2d(channels, out, 3, padding=1),
                 torch.nn.ReLU(inplace=True)]
      channels = out
    layers.append(torch.nn.MaxPool2d(2, 2))
  side = _SIZE.value // 32
  units = vgg.scaled(vgg.FC_WIDTH, _WIDTH.value)
  net = torch.nn.Sequential(
      *layers, torch.nn.Flatten(),
      torch.nn.Linear(channels * side * side, units),
      torch.nn.ReLU(inplace=True), torch.nn.Dropout(),
      torch.nn.Linear(units, units), torch.nn.ReLU(inplace=True),
      torch.nn.Dropout(), torch.nn.Linear(units, _CLASSES)).to(device)
  optimiser = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9,
                              weight_decay=5e-3)
  x = torch.from_numpy(np.asarray(images).transpose(0, 3, 1, 2).copy()).to(
      device)
  y = torch.from_numpy(np.array(labels)).long().to(device)
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def train_step():
    net.train()
    optimiser.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    optimiser.step()
    sync()

  def infer():
    net.eval()
    with torch.no_grad():
      net(x)
    sync()

  for name, step in (('train', train_step), ('inference', infer)):
    # Each step syncs itself (CUDA), so the loop adds no sync of its own.
    best = timing.best_seconds(step, calls=_STEPS.value,
                               repeats=_REPEATS.value, sync=None)
    _report(f'VGG-16 {name:9s} PyTorch {torch.__version__} ({device})', best)


def _hydranet(images) -> None:
  model = caud.Model(_HEADS.value, width_multiplier=_WIDTH.value)
  params = jax.jit(lambda x: model.init(
      jax.random.key(0), {'image': x}, train=False))(images)['params']
  labels = jax.random.bernoulli(
      jax.random.key(2), 0.3, (images.shape[0], _HEADS.value)).astype(
          jnp.int32)
  base = dict(optimizer='adam', learning_rate=1e-4, adam_b1=0.5,
              adam_b2=0.999, weight_decay=0.0, momentum=0.9,
              lr_schedule='constant', lr_decay_steps=0, lr_decay_factor=0.1,
              num_train_steps=1000, lr_mults=())
  for name, frozen in (('full step (all layers)', ''),
                       ('frozen trunk (heads only)', '^encoder/.*')):
    config = ml_collections.ConfigDict(dict(base, frozen=frozen))
    tx = optim.create_optimizer(config, params)
    opt_state = tx.init(params)
    mask = jax.tree_util.tree_map(
        lambda m: m != 0, optim.learning_rate_multipliers(config, params))

    def train_step(params, opt_state, images, labels, rng, tx=tx, mask=mask):
      def loss_fn(p):
        p = optim.stop_frozen_gradients(p, mask)
        logits, _ = model.apply({'params': p}, {'image': images}, train=True,
                                rngs={'dropout': rng})
        known = labels >= 0
        return jnp.sum(jnp.where(known, optax.sigmoid_binary_cross_entropy(
            logits, labels.astype(jnp.float32)), 0.0)) / labels.shape[0]
      grads = jax.grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    step = jax.jit(train_step)
    state_size = optim.state_parameter_count(opt_state)
    _report(f'HydraNet {_HEADS.value} heads, {name}', _best_seconds(
        step, params, opt_state, images, labels, jax.random.key(1)))
    print(f'  optimiser state: {state_size:,} scalars', flush=True)


def main(argv):
  del argv
  print(f'device: {jax.devices()[0]}; batch {_BATCH.value}, '
        f'{_SIZE.value}x{_SIZE.value}, width x{_WIDTH.value}', flush=True)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(
      size=(_BATCH.value, _SIZE.value, _SIZE.value, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, _CLASSES, _BATCH.value))
  if 'vgg' in _PARTS.value:
    _jax_vgg(images, labels)
    if _TORCH.value:
      _torch_vgg(images, labels)
  if 'hydranet' in _PARTS.value:
    _hydranet(images)


if __name__ == '__main__':
  app.run(main)
