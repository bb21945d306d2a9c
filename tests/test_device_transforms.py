"""Device-side augmentation against the host transforms (au_jax.data.transforms)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax.data import device_transforms
from au_jax.data import transforms

RESIZE, CROP, BATCH = 12, 9, 6


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (BATCH, RESIZE, RESIZE, 3), dtype=np.uint8)
  landmarks = rng.uniform(0, RESIZE - 1, (BATCH, 68, 2)).astype(np.float32)
  landmarks[1, 5] = -1.0  # absent points must stay exactly -1
  landmarks[3, 40:] = -1.0
  return images, landmarks


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      resize_size=RESIZE, crop_size=CROP, flip=True,
      pixel_mean=(0.5, 0.4, 0.3), pixel_std=(0.2, 0.25, 0.5),
      pixel_range=1.0, dtype='float32'))
  config.update(overrides)
  return config


def test_crop_flip_matches_host_for_the_same_offsets_and_flips():
  images, landmarks = _batch()
  top = np.array([0, 3, 1, 2, 3, 0], np.int32)
  left = np.array([3, 0, 2, 1, 3, 0], np.int32)
  flips = np.array([True, False, True, True, False, False])
  got_images, got_landmarks = jax.jit(
      device_transforms.crop_flip, static_argnums=5)(
          images, landmarks, top, left, flips, CROP)
  for i in range(BATCH):
    want_image, want_landmarks = transforms.crop_flip(
        images[i], landmarks[i], RESIZE, int(top[i]), int(left[i]), CROP,
        bool(flips[i]))
    np.testing.assert_array_equal(got_images[i], want_image)
    np.testing.assert_allclose(got_landmarks[i], want_landmarks, atol=1e-6)
  assert got_images.dtype == jnp.uint8
  np.testing.assert_array_equal(got_landmarks[1, 5], [-1, -1])  # not flipped
  # Example 3 is flipped: its absent points 40..67 move by the permutation,
  # but every one of them (and only they) is still exactly -1.
  absent = np.all(np.asarray(got_landmarks[3]) == -1, axis=-1)
  np.testing.assert_array_equal(
      absent, np.isin(transforms.MIRROR_PERMUTATION, np.arange(40, 68)))


def test_mirror_pixel_by_hand():
  # One 1x3 row crop of a 3x3 image: mirrored row is the reverse.
  image = np.arange(27, dtype=np.uint8).reshape(1, 3, 3, 3)
  out, _ = device_transforms.crop_flip(
      image, None, np.array([0]), np.array([0]), np.array([True]), 3)
  np.testing.assert_array_equal(out[0, 0, :, 0], [6, 3, 0])
  # Landmark x=0 (left edge) moves to x=2 in a 3-wide crop.
  landmarks = np.full((1, 68, 2), 5.0, np.float32)
  landmarks[0, 0] = [0.0, 1.0]  # jaw point 0 becomes jaw point 16
  _, moved = device_transforms.crop_flip(
      image, landmarks, np.array([0]), np.array([0]), np.array([True]), 3)
  np.testing.assert_allclose(moved[0, 16], [2.0, 1.0])
  np.testing.assert_allclose(moved[0, 0], [-3.0, 5.0])


def test_train_preprocess_equals_host_pipeline_with_drawn_offsets():
  images, landmarks = _batch(1)
  config = _config()
  key = device_transforms.augmentation_key(7, 3)
  out = jax.jit(lambda batch, key: device_transforms.train_preprocess(
      batch, key, config))(
          {'image': images, 'landmarks': landmarks,
           'au_occurrence': np.ones((BATCH, 2), np.int32)}, key)
  top, left, flips = device_transforms.sample_crop_flip(
      key, BATCH, RESIZE, CROP)
  assert 0 < int(np.sum(flips)) < BATCH  # both branches are exercised
  for i in range(BATCH):
    image, moved = transforms.crop_flip(
        images[i], landmarks[i], RESIZE, int(top[i]), int(left[i]), CROP,
        bool(flips[i]))
    np.testing.assert_allclose(
        out['image'][i],
        transforms.normalize(image, config.pixel_mean, config.pixel_std),
        rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out['landmarks'][i], moved, atol=1e-6)
  np.testing.assert_array_equal(out['au_occurrence'], 1)  # passes through
  assert out['image'].shape == (BATCH, CROP, CROP, 3)


def test_draws_are_a_function_of_seed_step_and_device():
  def draws(seed, step, device=0):
    key = device_transforms.augmentation_key(seed, step, device)
    return np.concatenate([np.asarray(a, np.int32) for a in
                           device_transforms.sample_crop_flip(
                               key, 64, 200, 170)])
  np.testing.assert_array_equal(draws(0, 5), draws(0, 5))
  # Traced step (as state.step inside jit) gives the same key.
  traced = jax.jit(lambda step: jax.random.key_data(
      device_transforms.augmentation_key(0, step, 1)))(5)
  np.testing.assert_array_equal(
      traced, jax.random.key_data(device_transforms.augmentation_key(0, 5, 1)))
  for other in (draws(1, 5), draws(0, 6), draws(0, 5, device=1)):
    assert np.mean(other != draws(0, 5)) > 0.5
  # Offsets cover [0, 30] and flips are ~half.
  d = draws(0, 5)
  assert d[:128].min() == 0 or d[:128].max() == 30 or d[:128].std() > 5
  assert 16 < d[128:].sum() < 48


def test_no_flip_when_disabled():
  key = device_transforms.augmentation_key(0, 0)
  _, _, flips = device_transforms.sample_crop_flip(key, 100, 12, 9,
                                                   flip=False)
  assert not np.any(flips)


def test_eval_preprocess_is_the_host_centre_crop():
  images, landmarks = _batch(2)
  config = _config()
  out = device_transforms.eval_preprocess(
      {'image': images, 'landmarks': landmarks}, config)
  host = transforms.CenterCrop(RESIZE, CROP)
  for i in range(BATCH):
    want = host.map({'image': images[i], 'landmarks': landmarks[i]})
    np.testing.assert_allclose(
        out['image'][i],
        transforms.normalize(want['image'], config.pixel_mean,
                             config.pixel_std), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out['landmarks'][i], want['landmarks'])


def test_normalize_caffe_range_and_bfloat16():
  images = np.array([[[[0, 128, 255]]]], np.uint8)
  caffe = device_transforms.normalize(images, (104., 117., 123.),
                                      (1., 1., 1.), pixel_range=255.0)
  np.testing.assert_allclose(caffe[0, 0, 0], [-104., 11., 132.], rtol=1e-6)
  half = device_transforms.normalize(images, (0.5, 0.5, 0.5), (0.5,) * 3,
                                     dtype='bfloat16')
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32)[0, 0, 0],
                             [-1.0, 128 / 127.5 - 1, 1.0], rtol=1e-2)


def test_bad_batches_are_refused_with_the_shape():
  config = _config()
  with pytest.raises(ValueError, match=r'float32 \(2, 12, 12, 3\)'):
    device_transforms.eval_preprocess(
        {'image': np.zeros((2, 12, 12, 3), np.float32)}, config)
  with pytest.raises(ValueError, match=r'\[B, 12, 12, 3\].*\(2, 10, 10, 3\)'):
    device_transforms.train_preprocess(
        {'image': np.zeros((2, 10, 10, 3), np.uint8)},
        device_transforms.augmentation_key(0, 0), config)
  with pytest.raises(ValueError, match='std must be > 0'):
    device_transforms.normalize(np.zeros((1, 3), np.uint8), (0,) * 3,
                                (1, 0, 1))
