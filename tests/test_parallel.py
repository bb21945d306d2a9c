"""Data parallelism: an 8-device pmap step equals the 1-device step."""

import textwrap

import numpy as np

from au_jax import parallel

import multidevice  # pylint: disable=g-import-not-at-top


# Runs in a fresh process: the host device count is fixed at JAX start-up.
_SCRIPT = textwrap.dedent("""
    import functools
    import flax.jax_utils, jax, numpy as np
    jax.config.update('jax_disable_most_optimizations', True)
    from au_jax import models, parallel, train
    from configs import drml
    assert jax.local_device_count() == 8, jax.devices()

    config = drml.get_config('test')
    config.model.dropout_rate = 0.0  # Dropout masks differ per device.
    model = models.create(config, axis_name=parallel.AXIS_NAME)
    state = train.create_train_state(config, model, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        'image': rng.normal(size=(8, 66, 66, 3)).astype(np.float32),
        'au_occurrence': rng.integers(-1, 2, size=(8, 12)).astype(np.int32),
    }
    step = functools.partial(train.train_step, config=config)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      n = len(devices)
      p_step = jax.pmap(step, axis_name=parallel.AXIS_NAME, devices=devices)
      p_state = flax.jax_utils.replicate(state, devices)
      sharded = {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}
      p_rng = flax.jax_utils.replicate(jax.random.key(1), devices)
      new_state, metrics = p_step(p_state, sharded, p_rng)
      results.append(jax.device_get(jax.tree_util.tree_map(
          lambda x: x[0], (new_state.params, new_state.batch_stats,
                           metrics['train_loss']))))
    one, eight = results
    flat_one = jax.tree_util.tree_leaves(one)
    flat_eight = jax.tree_util.tree_leaves(eight)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(flat_one, flat_eight))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(one[0])))
    print('MAXDIFF', worst, 'MOVED', moved, 'LOSS', float(one[2]), float(eight[2]))
    """)


def test_eight_device_step_equals_one_device_step():
  worst, _, moved, _, loss_one, loss_eight = multidevice.run_script(
      _SCRIPT, marker='MAXDIFF')
  assert float(moved) > 1e-6  # The step changed the parameters at all...
  assert float(worst) < 1e-5  # ...identically on 1 and 8 devices.
  np.testing.assert_allclose(float(loss_one), float(loss_eight), rtol=1e-5)


def test_shard_and_unshard_round_trip():
  batch = {'image': np.arange(24, dtype=np.float32).reshape(4, 2, 3),
           'subject': np.array([b'a', b'b', b'c', b'd'], object)}
  sharded = parallel.shard(batch)
  assert set(sharded) == {'image'}  # Text stays on the host.
  devices = parallel.device_count()
  assert sharded['image'].shape == (devices, 4 // devices, 2, 3)
  np.testing.assert_array_equal(parallel.unshard(sharded['image']),
                                batch['image'])


def test_pad_batch_marks_padding():
  batch = {'x': np.ones([3, 2], np.float32), 'y': np.array([1, 2, 3])}
  padded = parallel.pad_batch(batch, 5)
  np.testing.assert_array_equal(padded['mask'], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(padded['y'], [1, 2, 3, 0, 0])
  assert padded['x'].shape == (5, 2)


# Dropout, random crop and mirror on (the shipped test config): the draws
# follow each example's row in the global batch, not the device.
_RANDOM_SCRIPT = textwrap.dedent("""
    import functools
    import flax.jax_utils, jax, numpy as np
    jax.config.update('jax_disable_most_optimizations', True)
    from au_jax import models, parallel, train
    from configs import drml
    assert jax.local_device_count() == 8, jax.devices()

    rng = np.random.default_rng(0)
    size = drml.get_config('test').resize_size
    batch = {
        'image': rng.integers(0, 256, size=(8, size, size, 3), dtype=np.uint8),
        'landmarks': rng.uniform(0, size, size=(8, 68, 2)).astype(np.float32),
        'au_occurrence': rng.integers(-1, 2, size=(8, 12)).astype(np.int32),
    }
    losses = {}
    for dropout in (0.5, 0.0):
      config = drml.get_config('test')
      config.model.dropout_rate = dropout
      model = models.create(config, axis_name=parallel.AXIS_NAME)
      state = train.create_train_state(config, model, jax.random.key(0))
      step = functools.partial(train.train_step, config=config)
      results = []
      for devices in (jax.devices()[:1], jax.devices()):
        n = len(devices)
        p_step = jax.pmap(step, axis_name=parallel.AXIS_NAME, devices=devices)
        p_state = flax.jax_utils.replicate(state, devices)
        sharded = {k: v.reshape((n, -1) + v.shape[1:])
                   for k, v in batch.items()}
        p_rng = flax.jax_utils.replicate(jax.random.key(1), devices)
        new_state, metrics = p_step(p_state, sharded, p_rng)
        results.append(jax.device_get(jax.tree_util.tree_map(
            lambda x: x[0], (new_state.params, metrics['train_loss']))))
      one, eight = results
      worst = max(float(np.max(np.abs(a - b))) for a, b in zip(
          jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(eight)))
      losses[dropout] = (float(one[1]), float(eight[1]), worst)
    print('RANDOM', *losses[0.5], *losses[0.0])
    """)


def test_random_draws_follow_the_example_not_the_device():
  (loss_one, loss_eight, worst, plain_one, _,
   plain_worst) = multidevice.run_script(_RANDOM_SCRIPT, marker='RANDOM')
  # With dropout, crop and mirror drawn, 8 devices take 1 device's step.
  assert float(worst) < 1e-5
  np.testing.assert_allclose(float(loss_eight), float(loss_one), rtol=1e-5)
  assert float(plain_worst) < 1e-5
  # The dropout masks were real: the loss differs from dropout off.
  assert abs(float(loss_one) - float(plain_one)) > 1e-4


def test_global_rows_interleave_processes():
  # Outside pmap: one device, no rows to pick.
  assert parallel.global_rows(4) == (None, 4)
