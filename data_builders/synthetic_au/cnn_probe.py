r"""Learnability check: a small CNN trained briefly on `default` (CPU).

  python -m data_builders.synthetic_au.cnn_probe --data_dir=/tmp/synth_data \
      [--steps=600]

Trains a 4-conv network on 96x96 RGB frames of S01-S16 (masked sigmoid
cross-entropy, Adam) and prints per-AU F1 at 0.5 on S17-S24 next to the
all-positive floor. Not a method of the library: it only shows that the
rendered cues are learnable at DRML's input scale in minutes of CPU time.
"""

import argparse
import time

import cv2
import numpy as np

from au_jax import aus
from data_builders.synthetic_au import stats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--steps', type=int, default=600)
  parser.add_argument('--batch', type=int, default=64)
  args = parser.parse_args()

  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  data = stats.load('default', args.data_dir, images=True)
  images = np.stack([cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA)
                     for image in data['image']]).astype(np.float32)
  images = (images - 128.0) / 64.0
  labels = data['au_occurrence'].astype(np.float32)
  test = data['identity'] >= 16

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):  # x: [B, 96, 96, 3] -> logits [B, 15]
      for features in (24, 48, 64, 96):
        x = nn.relu(nn.Conv(features, (3, 3), strides=2)(x))
        x = nn.relu(nn.Conv(features, (3, 3))(x))
      x = x.reshape(x.shape[0], -1)
      return nn.Dense(len(aus.SYNTHETIC_AUS))(nn.relu(nn.Dense(128)(x)))

  model = Net()
  params = model.init(jax.random.PRNGKey(0), images[:1])
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply(p, x)
      known = (y >= 0).astype(jnp.float32)
      loss = optax.sigmoid_binary_cross_entropy(logits, jnp.maximum(y, 0))
      return (loss * known).sum() / jnp.maximum(known.sum(), 1.0)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  predict = jax.jit(lambda p, x: model.apply(p, x) > 0)
  rng = np.random.default_rng(0)
  train_index = np.flatnonzero(~test)
  start = time.time()
  for i in range(args.steps):
    batch = rng.choice(train_index, args.batch, replace=False)
    x = images[batch]
    flip = rng.random(len(batch)) < 0.5  # mirror half the batch
    x[flip] = x[flip, :, ::-1]
    params, opt_state, loss = step(params, opt_state, x, labels[batch])
    if i % 100 == 0:
      print(f'step {i} loss {float(loss):.3f} {time.time() - start:.0f} s',
            flush=True)
  test_index = np.flatnonzero(test)
  predicted = np.concatenate([
      np.asarray(predict(params, images[test_index[i:i + 256]]))
      for i in range(0, len(test_index), 256)])
  print(f'{args.steps} steps of {args.batch} in {time.time() - start:.0f} s')
  print('| AU | all-positive | small CNN |\n|---|---|---|')
  rows = []
  for j, au in enumerate(aus.SYNTHETIC_AUS):
    y = data['au_occurrence'][test_index, j]
    rows.append((stats.f1_score(np.ones(len(y)), y),
                 stats.f1_score(predicted[:, j], y)))
    print(f'| {au} | {100 * rows[-1][0]:.1f} | {100 * rows[-1][1]:.1f} |')
  mean = 100 * np.mean(rows, axis=0)
  print(f'| mean | {mean[0]:.1f} | {mean[1]:.1f} |')


if __name__ == '__main__':
  main()
