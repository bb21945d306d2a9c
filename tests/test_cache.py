"""In-memory training split (au_jax.data.cache): contents, sampling, resume, refusal."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from au_jax.data import cache
from au_jax.data import input_pipeline
from au_jax.data import transforms
from configs import drml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def fold(tiny_data_dir):
  config = drml.get_config('test')
  config.data_dir = tiny_data_dir
  config.cache = 'host'
  builder = input_pipeline.open_dataset(config)
  return config, input_pipeline.fold_data(config, builder, 1)


@pytest.fixture(scope='module')
def cached(fold):
  config, data = fold
  return cache.build(config, data)


def test_cache_holds_every_record_decoded_resized_and_labelled(fold, cached):
  config, data = fold
  source = input_pipeline._source(data.builder, data.subjects.train)  # pylint: disable=protected-access
  n = len(source)
  assert cached.num_records == n
  assert cached.arrays['image'].shape == (n, 72, 72, 3)
  assert cached.arrays['image'].dtype == np.uint8
  assert cached.arrays['au_occurrence'].shape == (n, len(config.aus))
  np.testing.assert_array_equal(cached.arrays['record_index'], np.arange(n))
  select = transforms.SelectLabels(data.label_indices)
  for index in (0, n // 2, n - 1):  # records stay in split order
    record = select.map(source[index])
    image, landmarks = transforms.resize_face(
        record['image'], record['landmarks'], 72)
    np.testing.assert_array_equal(cached.arrays['image'][index], image)
    np.testing.assert_array_equal(cached.arrays['landmarks'][index],
                                  landmarks)
    for key in ('au_occurrence', 'frame_index', 'identity'):
      np.testing.assert_array_equal(cached.arrays[key][index], record[key])


def test_every_epoch_visits_every_record_once():
  n, b = 10, 4  # batches straddle epochs: 2.5 batches per epoch
  stream = np.concatenate([np.asarray(cache.batch_indices(3, s, n, b))
                           for s in range(5)])  # 20 = two epochs
  np.testing.assert_array_equal(np.sort(stream[:10]), np.arange(10))
  np.testing.assert_array_equal(np.sort(stream[10:]), np.arange(10))
  assert not np.array_equal(stream[:10], stream[10:])  # reshuffled
  np.testing.assert_array_equal(  # each epoch is its own permutation
      stream[10:], cache.epoch_permutation(3, 1, n))
  other_seed = np.asarray(cache.batch_indices(4, 0, n, b))
  assert not np.array_equal(other_seed, stream[:4])


def test_host_sampler_equals_batch_indices_and_resumes_exactly(cached):
  sampler = cache.HostSampler(cached, seed=5, batch_size=8)
  batches = [next(sampler) for _ in range(6)]
  n = cached.num_records
  for step, batch in enumerate(batches):
    want = np.asarray(cache.batch_indices(5, step, n, 8))
    np.testing.assert_array_equal(batch['record_index'], want)
    np.testing.assert_array_equal(batch['image'],
                                  cached.arrays['image'][want])
  state = cache.HostSampler(cached, 5, 8)
  for _ in range(4):
    next(state)
  resumed = cache.HostSampler(cached, 5, 8)
  resumed.set_state(state.get_state())
  np.testing.assert_array_equal(next(resumed)['record_index'],
                                batches[4]['record_index'])
  with pytest.raises(ValueError, match='seed 6'):
    cache.HostSampler(cached, 6, 8).set_state(state.get_state())


def test_device_sampler_matches_host_sampler(cached):
  host = cache.HostSampler(cached, seed=2, batch_size=8)
  device = cache.DeviceSampler(cached, seed=2, batch_size=8)
  for _ in range(2):
    want, got = next(host), next(device)
    d = jax.local_device_count()
    for key in ('image', 'au_occurrence', 'landmarks'):
      assert got[key].shape[0] == d
      np.testing.assert_array_equal(
          np.asarray(got[key]).reshape(want[key].shape), want[key])


def test_device_batch_shards_concatenate_to_the_one_device_batch():
  # 4 CPU devices in a fresh process: shard d of the pmapped gather must be
  # rows d*B/4.. of the single-device batch.
  script = textwrap.dedent("""
      import jax, numpy as np
      from jax import lax
      from au_jax.data import cache
      assert jax.local_device_count() == 4
      arrays = {'image': np.arange(30 * 2, dtype=np.uint8).reshape(30, 2)}
      one = cache.device_batch(arrays, 9, 7, 8)['image']
      rep = {'image': cache.replicate(arrays['image'], jax.local_devices())}
      sharded = jax.pmap(lambda a: cache.device_batch(
          a, 9, 7, 8, lax.axis_index('batch'), 4), axis_name='batch')(rep)
      np.testing.assert_array_equal(
          np.asarray(sharded['image']).reshape(8, 2), one)
      print('OK')
  """)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, '-c', script], env=env,
                          capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.stdout.strip().endswith('OK'), result.stderr[-2000:]


def test_refuses_with_needed_and_free_sizes(monkeypatch, fold):
  config, data = fold
  monkeypatch.setattr(cache, 'host_free_bytes', lambda: 2 * 2**30)
  with pytest.raises(ValueError, match=r'needs 1\.60 GiB but only 2\.00 GiB '
                     r'of host RAM is free'):
    cache.check_fits(int(1.6 * 2**30), 'host')
  cache.check_fits(int(1.4 * 2**30), 'host')  # 70% of free: accepted
  # CPU devices have no allocator statistics: their copies count against
  # the host (one per device plus the decoding copy).
  with pytest.raises(ValueError, match=r'host RAM for 1 cpu device copies'):
    cache.check_fits(int(0.8 * 2**30), 'device')
  monkeypatch.setattr(cache, 'host_free_bytes', lambda: 1000)
  with pytest.raises(ValueError, match=r'train split \(\d+ frames at 72x72\)'
                     r' needs'):
    cache.build(config, data)
  with pytest.raises(ValueError, match="'disk'"):
    cache.check_mode('disk')
