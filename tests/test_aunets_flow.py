"""AUNets: optical flow as data (the pipeline's flow image, its crop and
mirror, AU motion on synthetic_au) and per-AU runs (weights-only finished
runs, the disk plan, resuming a half-finished plan)."""

import os

import cv2
import jax
import ml_collections
import numpy as np
import pytest

from au_jax.preprocess import flow as flow_lib
from au_jax.data import device_transforms
from configs import aunets as aunets_config
from au_jax.data import input_pipeline
import dataclasses
from au_jax import aus as aus_lib
from data_builders.synthetic_au import config as synth_config
from data_builders.synthetic_au import generate
from au_jax import checkpointing
from au_jax import runs
from au_jax import train

jax.config.update('jax_disable_most_optimizations', True)


# ----------------------------------------------------------------------------
# Flow as data.

def test_neighbour_pairs_by_hand():
  # Shuffled records: video A (view 1) frames 0, 1, 2; the same sequence seen
  # from view 2 frames 0, 1; video B one frame.
  subject = np.array(['S1'] * 6)
  sequence = np.array(['A', 'A', 'A', 'B', 'A', 'A'])
  view = np.array([1, 2, 1, 1, 1, 2])
  frame = np.array([2, 1, 0, 7, 1, 0])
  first, second, counts = flow_lib.neighbour_pairs(subject, sequence, view,
                                                   frame)
  # A/1: 2 -> 4 -> 0 (frames 0, 1, 2); the last frame (record 0) reuses 4->0.
  # A/2: 5 -> 1; record 1 reuses 5->1. B: record 3 alone (zero motion).
  np.testing.assert_array_equal(first, [4, 5, 2, 3, 4, 5])
  np.testing.assert_array_equal(second, [0, 1, 4, 3, 0, 1])
  assert counts == {'frames': 6, 'videos': 3, 'last_frames': 2,
                    'single_frames': 1}
  with pytest.raises(ValueError, match='appears twice'):
    flow_lib.neighbour_pairs(subject[:2], sequence[:2], [1, 1], [3, 3])


def _texture(size=96, seed=0):
  rng = np.random.default_rng(seed)
  texture = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)), (0, 0), 2)
  texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
  return np.repeat(texture.astype(np.uint8)[..., None], 3, -1)


def test_flow_image_mirror_matches_flow_of_mirrored_frames():
  previous = _texture()
  current = np.roll(previous, shift=(1, 3), axis=(0, 1))  # dx 3, dy 1.
  image = flow_lib.flow_image(previous, current)
  inner = np.median(image[16:-16, 16:-16].reshape(-1, 3), axis=0)
  # D = 3: R = (3 + 3) 255/6 = 255, G = (-1 + 3) 255/6 = 85 (D a little
  # above 3 where the wrapped border misleads the flow: R a little lower).
  np.testing.assert_allclose(inner[:2], [255, 85], atol=10)
  mirrored = flow_lib.flow_image(previous[:, ::-1], current[:, ::-1])
  reflected = flow_lib.mirror_flow_image(image)
  np.testing.assert_allclose(
      np.median(mirrored[16:-16, 16:-16].reshape(-1, 3), axis=0),
      np.median(reflected[16:-16, 16:-16].reshape(-1, 3), axis=0), atol=6)
  still = flow_lib.flow_image(previous, None, size=40)
  assert still.shape == (40, 40, 3) and np.all(still == 128)


def test_device_transforms_crop_and_mirror_flow_with_the_face():
  rng = np.random.default_rng(1)
  batch = {'image': rng.integers(0, 256, (4, 12, 12, 3), np.uint8),
           'flow': rng.integers(0, 256, (4, 12, 12, 3), np.uint8)}
  config = ml_collections.ConfigDict(dict(
      resize_size=12, crop_size=8, flip=True, pixel_mean=(0., 0., 0.),
      pixel_std=(1., 1., 1.)))
  key = jax.random.key(2)  # Flips two of the four.
  out = device_transforms.train_preprocess(batch, key, config)
  top, left, flips = device_transforms.sample_crop_flip(key, 4, 12, 8)
  for b in range(4):
    t, l = int(top[b]), int(left[b])
    face = batch['image'][b, t:t + 8, l:l + 8]
    flow = batch['flow'][b, t:t + 8, l:l + 8]
    if flips[b]:
      face, flow = face[:, ::-1], flow_lib.mirror_flow_image(flow)
    np.testing.assert_allclose(out['image'][b], face / 255, atol=1e-6)
    np.testing.assert_allclose(out['flow'][b], flow / 255, atol=1e-6)
  assert 0 < int(flips.sum()) < 4  # Both branches were checked.
  evaluated = device_transforms.eval_preprocess(batch, config)
  np.testing.assert_allclose(evaluated['flow'],
                             batch['flow'][:, 2:10, 2:10] / 255, atol=1e-6)


def _flow_config(data_dir, **overrides):
  config = aunets_config.get_config('test-channels')
  config.data_dir = data_dir
  config.init_from = None  # No EmoNet run in these tests.
  for field, value in overrides.items():
    config[field] = value
  return config


def test_pipeline_flow_is_the_flow_to_the_next_frame(tiny_data_dir):
  config = _flow_config(tiny_data_dir)
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, 1)
  source = input_pipeline.split_source(data, 'test')
  plain = builder.as_data_source(
      split='+'.join(data.subjects.test))
  assert source.counts['last_frames'] == source.counts['videos'] > 0
  size = config.resize_size
  for index in (0, 7):  # Tiny videos have 8 frames: 7 is the last.
    record = source[index]
    assert record['frame_index'] == index
    pair = (0, 1) if index == 0 else (6, 7)  # The last reuses 6 -> 7.
    expected = flow_lib.flow_image(plain[pair[0]]['image'],
                                   plain[pair[1]]['image'], size=size)
    np.testing.assert_array_equal(record['flow'], expected)
    assert record['flow'].shape == (size, size, 3)
  batch = next(iter(input_pipeline.eval_batches(config, data, 'test')))
  assert batch['flow'].shape == (config.eval_batch_size, size, size, 3)
  assert batch['flow'].dtype == np.uint8


def test_flow_magnitude_in_au_region_rises_at_onset():
  """On synthetic_au (one `default` subject, 3 videos of 64 frames at 128
  px), the encoded |flow| (B channel - mid-grey, per-image normalised) in an
  AU's region, relative to the whole face (head motion moves everything),
  is larger between two frames where the AU's coded intensity rises than
  between frames where it stays the same."""
  synth = dataclasses.replace(synth_config.get('default'), videos_per_subject=3)
  records = generate.render_subject(synth, 0, encode=False)
  regions = {12: range(48, 68), 1: range(17, 27)}  # Lips; brows.
  ratios = {au: {'onset': [], 'still': []} for au in regions}
  for before, after in zip(records[:-1], records[1:]):
    if before['sequence'] != after['sequence']:
      continue
    magnitude = flow_lib.flow_image(before['image'], after['image'])[
        ..., 2].astype(np.float32) - 127.5
    for au, points in regions.items():
      low = np.floor(before['landmarks'][list(points)].min(0) - 4).astype(int)
      high = np.ceil(before['landmarks'][list(points)].max(0) + 4).astype(int)
      region = magnitude[max(low[1], 0):high[1] + 1,
                         max(low[0], 0):high[0] + 1]
      column = list(aus_lib.SYNTHETIC_AUS).index(au)
      rise = after['au_intensity'][column] - before['au_intensity'][column]
      kind = 'onset' if rise >= 1 else 'still' if rise == 0 else None
      if kind:
        ratios[au][kind].append(region.mean() / magnitude.mean())
  for au, kinds in ratios.items():
    assert len(kinds['onset']) >= 5, (au, len(kinds['onset']))
    onset, still = np.mean(kinds['onset']), np.mean(kinds['still'])
    assert onset > 1.4 * still, (au, onset, still)


# ----------------------------------------------------------------------------
# Runs: weights-only finished runs, the disk plan, resuming a per-AU plan.

def test_plan_disk_of_the_paper_plan_by_hand():
  sizes = train.plan_disk_bytes(aunets_config.get_config('paper'))
  weights = 134_268_738 * 4  # VGG-16 with a 2-way output, float32.
  assert sizes['params'] == sizes['weights_only'] == weights
  # Adam: two moments per parameter, plus int32 step counts (Adam's and
  # the schedule's).
  assert 2 * weights < sizes['optimizer'] <= 2 * weights + 16
  assert sizes['runs'] == 12 * 3  # BP4D's 12 AUs x 3 folds.
  # 35 finished runs (weights only) + the running one's newest two, best and
  # the step being written: 35 x 0.54 + 4 x 1.61 GB.
  assert sizes['peak'] == 35 * weights + 4 * sizes['full']
  assert sizes['full'] == weights + sizes['optimizer']
  assert sizes['peak'] < 64e9 < 2 * 36 * sizes['full']


def test_flow_plan_trains_keeps_weights_only_and_resumes(
    tiny_data_dir, tmp_path, monkeypatch, capsys):
  """A Channels (RGB + flow) per-AU plan trains end to end and a finished AU
  keeps only its best weights. Rerun, the finished AU is not trained again
  (its stored results make the fold); with one more AU the plan skips the
  finished AU and goes on to train the new one."""
  workdir = str(tmp_path)
  config = _flow_config(tiny_data_dir, aus=(1,))
  first = train.train_and_evaluate(config, workdir)
  assert 'Disk plan: 1 runs' in capsys.readouterr().out
  au_1 = runs.run_dir(config, workdir, runs.RunKey(1, au=1))
  assert not os.path.exists(os.path.join(au_1, 'checkpoints'))
  marker = os.path.join(au_1, checkpointing.WEIGHTS_DIR,
                        checkpointing.FINISHED)
  stamp = os.path.getmtime(marker)
  raw, _ = checkpointing.restore_raw(au_1)  # What init_from/predict read.
  assert set(raw) == {'params', 'batch_stats'}  # No optimiser state.
  assert raw['params']['encoder']['conv1_1']['kernel'].shape[2] == 6
  before = checkpointing.read_test_results(au_1)
  assert before['probabilities'].shape == (32, 1)  # 2 test subjects x 16.

  class Trained(Exception):
    pass

  def create_train_state(run_config, *unused):
    raise Trained(run_config.aus)

  monkeypatch.setattr(train, 'create_train_state', create_train_state)
  again = train.train_and_evaluate(config, workdir)  # Nothing trains.
  assert again['per_au']['1'] == first['per_au']['1']
  assert os.path.getmtime(marker) == stamp
  with pytest.raises(Trained) as trained:  # The plan goes on to AU 12.
    train.train_and_evaluate(_flow_config(tiny_data_dir, aus=(1, 12)),
                             workdir)
  assert trained.value.args == ((12,),)
