r"""DRML train-step and inference throughput on the current default device.

Self-contained (does not use au_jax.train): synthetic images and labels, the
DRML multi-label loss, optax SGD with momentum 0.9 and weight decay 5e-4 as
in the authors' solver; one device (jax.devices()[0]), jit.

  PYTHONPATH=. python benchmarks/drml_throughput.py --batch_size=16 \
      --steps=3 --input_size=170 --implementation=unrolled

Prints compile time and images/s (train step: forward + backward + update;
inference: eval-mode forward) as the best of --repeats windows of --steps
steps each.

Measured 2026-11-21 on the shared 2-core CPU, XLA:CPU, float32, 12 AUs, noisy,
best of 3 windows.
  170x170, batch 16 (the command above with --repeats=3):
    unrolled: train 2.8 img/s (5.8 s/step, compile 27 s), inference 6.2 img/s
    (earlier runs at load 7-8: train 1.6-2.4 img/s, einsum 1.3 img/s)
  --input_size=90 --batch_size=32 (configs/drml.py CPU job), interleaved:
    train step unrolled 2.48 s, einsum 2.95 s, shifted 3.11 s per step.
No GPU was lent to this task, so there are no GPU figures yet.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import optax

from au_jax.models import drml
from au_jax.models import layers
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per step.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps per window.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Windows; the best counts.')
_SIZE = flags.DEFINE_integer('input_size', 170, 'Input height = width.')
_IMPLEMENTATION = flags.DEFINE_enum(
    'implementation', 'unrolled', list(layers.IMPLEMENTATIONS),
    'Region layer formulation.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Compute dtype (parameters stay float32).')
_NUM_AUS = flags.DEFINE_integer('num_aus', 12, 'Outputs (BP4D: 12).')


def multilabel_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """DRML loss (poster): sigmoid CE over labels 1/0, -1 ignored; / batch.

  logits, labels: [B, C]; labels 1 present, 0 absent, -1 unknown.
  """
  losses = optax.sigmoid_binary_cross_entropy(
      logits, jnp.clip(labels, 0, 1).astype(logits.dtype))
  return jnp.sum(jnp.where(labels >= 0, losses, 0.)) / logits.shape[0]


def _time(fn, *args) -> float:
  """Best seconds per call over the windows (after one warm-up call)."""
  return timing.best_seconds(fn, *args, calls=_STEPS.value,
                             repeats=_REPEATS.value)


def main(argv):
  del argv
  device = jax.devices()[0]
  model = drml.Model(num_aus=_NUM_AUS.value,
                     region_implementation=_IMPLEMENTATION.value,
                     dtype=jnp.dtype(_DTYPE.value))
  size, batch_size = _SIZE.value, _BATCH.value
  keys = jax.random.split(jax.random.key(0), 4)
  batch = jax.device_put({
      'image': jax.random.normal(keys[0], (batch_size, size, size, 3)),
      'label': jax.random.randint(keys[1], (batch_size, _NUM_AUS.value), -1,
                                  2)}, device)
  variables = jax.jit(lambda b: model.init(keys[2], b, train=False))(batch)
  tx = optax.chain(optax.add_decayed_weights(5e-4),
                   optax.sgd(1e-3, momentum=0.9))
  opt_state = tx.init(variables['params'])

  def train_step(params, batch_stats, opt_state, batch, rng):
    def loss_fn(params):
      (logits, _), updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, batch, train=True,
          rngs={'dropout': rng}, mutable=['batch_stats'])
      return multilabel_loss(logits, batch['label']), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    param_updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, param_updates),
            updates['batch_stats'], opt_state, loss)

  def infer(variables, batch):
    return model.apply(variables, batch, train=False)[0]

  args = (variables['params'], variables['batch_stats'], opt_state, batch,
          keys[3])
  start = time.perf_counter()
  train_compiled = jax.jit(train_step).lower(*args).compile()
  train_compile_s = time.perf_counter() - start
  start = time.perf_counter()
  infer_compiled = jax.jit(infer).lower(variables, batch).compile()
  infer_compile_s = time.perf_counter() - start
  train_s = _time(train_compiled, *args)
  infer_s = _time(infer_compiled, variables, batch)
  print(f'device: {device.device_kind} ({device.platform}), '
        f'{jax.device_count()} device(s); DRML {size}x{size}, batch '
        f'{batch_size}, region={_IMPLEMENTATION.value}, dtype={_DTYPE.value}')
  print(f'train step: {batch_size / train_s:8.1f} img/s '
        f'({1e3 * train_s:.0f} ms/step, compile {train_compile_s:.1f} s)')
  print(f'inference:  {batch_size / infer_s:8.1f} img/s '
        f'({1e3 * infer_s:.0f} ms/batch, compile {infer_compile_s:.1f} s)')


if __name__ == '__main__':
  app.run(main)
