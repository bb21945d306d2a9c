"""AUNets: fusion variants, their sizes (paper table 3), weight copies, loss."""

import os
import re

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax.methods import aunets as aunets_method
from au_jax.models import aunets
from au_jax.models import caud
from au_jax.models import vgg
from au_jax.preprocess import flow as flow_lib

jax.config.update('jax_disable_most_optimizations', True)

WIDTH = 1 / 16
SIZE = 64  # pool5 2x2: fc6 row copies keep their spatial meaning.


def _batch(size, abstract=True, batch_size=1):
  if abstract:
    image = jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32)
    return {'image': image, 'flow': image}
  keys = jax.random.split(jax.random.key(3))
  return {'image': jax.random.normal(keys[0], (batch_size, size, size, 3)),
          'flow': jax.random.normal(keys[1], (batch_size, size, size, 3))}


def _abstract(model, size):
  return jax.eval_shape(lambda b: model.init(
      jax.random.key(0), b, train=False), _batch(size))['params']


# (total, learnable) at full size, one AU; paper table 3 in millions.
TABLE_3 = {'rgb': (134, 134), 'flow': (134, 134), 'channels': (134, 134),
           'horizontal': (237, 237), 'pi_conv': (251, 237),
           'pi_fc6': (268, 151), 'pi_fc7': (268, 134)}


@pytest.mark.parametrize('fusion', aunets.FUSIONS)
def test_parameter_counts_match_paper_table_3(fusion):
  params = _abstract(aunets.Model(1, fusion=fusion), 224)
  frozen = aunets.frozen_regex(fusion)
  total = learnable = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    size = int(np.prod(leaf.shape))
    total += size
    # re.search: the regex must not catch 'motion_encoder' etc.
    if not (frozen and re.search(frozen, '/'.join(k.key for k in path))):
      learnable += size
  paper_total, paper_learnable = TABLE_3[fusion]
  assert abs(total / 1e6 - paper_total) / paper_total < 0.01, total
  assert abs(learnable / 1e6 - paper_learnable) / paper_learnable < 0.01
  assert params['output']['kernel'].shape[-1] == 2  # 2-way softmax, 1 AU.
  if fusion == 'horizontal':  # 224x448 input: pool5 7x14x512.
    assert params['fc6']['kernel'].shape == (7 * 14 * 512, 4096)


def test_frozen_regex_per_fusion():
  assert aunets.frozen_regex('rgb') == ''
  assert aunets.frozen_regex('pi_fc6') == '^(encoder|fc6)/.*'
  assert not re.search(aunets.frozen_regex('pi_fc7'),
                       'motion_encoder/conv1_1/kernel')
  with pytest.raises(ValueError, match="fusion 'late'"):
    aunets.frozen_regex('late')


def test_fusion_output_shapes_and_missing_flow_error():
  for fusion in aunets.FUSIONS:
    model = aunets.Model(3, fusion=fusion, width_multiplier=WIDTH)
    params = _abstract(model, 32)
    logits, aux = jax.eval_shape(lambda p, b: model.apply(
        {'params': p}, b, train=False), params, _batch(32, batch_size=2))
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    assert aux['two_way_logits'].shape == (2, 3, 2)
    streams = 2 if fusion == 'pi_fc7' else 1
    assert aux['features'].shape == (2, streams * 256)
  model = aunets.Model(1, fusion='channels', width_multiplier=WIDTH)
  image_only = {'image': jnp.zeros((1, 32, 32, 3))}
  with pytest.raises(ValueError, match=r"needs batch\['flow'\]"):
    model.init(jax.random.key(0), image_only, train=False)
  # 'rgb' ignores flow; 'flow' (Alone) needs no image.
  jax.eval_shape(lambda b: aunets.Model(1, width_multiplier=WIDTH).init(
      jax.random.key(0), b, train=False), image_only)
  alone = aunets.Model(1, fusion='flow', width_multiplier=WIDTH)
  jax.eval_shape(lambda b: alone.init(jax.random.key(0), b, train=False),
                 {'flow': image_only['image']})


@pytest.fixture(scope='module')
def rgb_source():
  """A trained-RGB stand-in: an RGB AUNet (same layout as a binary VGG)."""
  model = aunets.Model(1, width_multiplier=WIDTH)
  batch = _batch(SIZE, abstract=False, batch_size=2)
  params = model.init(jax.random.key(7), batch, train=False)['params']
  return model, params, batch


def test_channels_copies_rgb_filters_for_flow(rgb_source):
  model, source, batch = rgb_source
  target = aunets.Model(1, fusion='channels', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(target, source, _abstract(target, SIZE))
  kernel = mapped['encoder']['conv1_1']['kernel']
  assert kernel.shape == (3, 3, 6, 4)
  np.testing.assert_array_equal(kernel[:, :, 3:], kernel[:, :, :3])
  np.testing.assert_array_equal(kernel[:, :, :3],
                                source['encoder']['conv1_1']['kernel'])
  # With no motion (flow image 0), the fused net is the RGB net.
  still = dict(batch, flow=jnp.zeros_like(batch['flow']))
  expected, _ = model.apply({'params': source}, batch, train=False)
  fused, _ = target.apply({'params': mapped}, still, train=False)
  np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)


def test_horizontal_and_pi_conv_duplicate_fc6_rows(rgb_source):
  _, source, _ = rgb_source
  rows = source['fc6']['kernel'].reshape(2, 2, 32, -1)  # pool5 [h, w, c].
  horizontal = aunets.Model(1, fusion='horizontal', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(horizontal, source,
                               _abstract(horizontal, SIZE))
  grid = mapped['fc6']['kernel'].reshape(2, 4, 32, -1)  # [rgb | flow] on w.
  np.testing.assert_array_equal(grid[:, :2], rows)
  np.testing.assert_array_equal(grid[:, 2:], rows)
  pi_conv = aunets.Model(1, fusion='pi_conv', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(pi_conv, source, _abstract(pi_conv, SIZE))
  grid = mapped['fc6']['kernel'].reshape(2, 2, 64, -1)  # rgb, flow channels.
  np.testing.assert_array_equal(grid[:, :, :32], rows)
  np.testing.assert_array_equal(grid[:, :, 32:], rows)
  jax.tree.map(np.testing.assert_array_equal, mapped['motion_encoder'],
               source['encoder'])
  assert 'motion_fc6' not in mapped


def test_pi_streams_start_as_copies_and_outputs_reset(rgb_source):
  _, source, batch = rgb_source
  pi_fc6 = aunets.Model(1, fusion='pi_fc6', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(pi_fc6, source, _abstract(pi_fc6, SIZE))
  assert set(mapped) == {'encoder', 'motion_encoder', 'fc6', 'motion_fc6',
                         'fc7', 'output'}
  np.testing.assert_array_equal(mapped['fc7']['kernel'][:256],
                                source['fc7']['kernel'])
  np.testing.assert_array_equal(mapped['fc7']['kernel'][256:],
                                source['fc7']['kernel'])
  # Same input in both streams -> identical stream activations.
  same = dict(batch, flow=batch['image'])
  _, state = pi_fc6.apply({'params': mapped}, same, train=False,
                          capture_intermediates=True)
  inter = state['intermediates']
  np.testing.assert_array_equal(inter['fc6']['__call__'][0],
                                inter['motion_fc6']['__call__'][0])
  pi_fc7 = aunets.Model(1, fusion='pi_fc7', width_multiplier=WIDTH)
  mapped = aunets.adapt_params(pi_fc7, source, _abstract(pi_fc7, SIZE))
  assert 'output' not in mapped  # Fan-in doubled: the output starts anew.
  jax.tree.map(np.testing.assert_array_equal, mapped['motion_fc7'],
               source['fc7'])


def test_adapt_from_hydranet_head_and_pass_through(rgb_source):
  _, source, _ = rgb_source
  hydra = {'encoder': source['encoder'],
           'head_0': {k: source[k] for k in ('fc6', 'fc7', 'output')}}
  target = aunets.Model(1, width_multiplier=WIDTH)
  shapes = _abstract(target, SIZE)
  mapped = aunets.adapt_params(target, hydra, shapes)
  jax.tree.map(np.testing.assert_array_equal, mapped, source)
  # A checkpoint already in the fusion's layout passes through unchanged.
  horizontal = aunets.Model(1, fusion='horizontal', width_multiplier=WIDTH)
  once = aunets.adapt_params(horizontal, source, _abstract(horizontal, SIZE))
  twice = aunets.adapt_params(horizontal, once, _abstract(horizontal, SIZE))
  jax.tree.map(np.testing.assert_array_equal, twice, once)
  two_heads = caud.join_heads([hydra, hydra])
  with pytest.raises(ValueError, match='2 heads'):
    aunets.adapt_params(target, two_heads, shapes)
  wide = aunets.Model(1, width_multiplier=2 * WIDTH)
  with pytest.raises(ValueError, match='shape'):
    aunets.adapt_params(wide, source, _abstract(wide, SIZE))


def test_emonet_output_is_not_carried_over():
  emonet = jax.eval_shape(lambda b: vgg.Model(8, width_multiplier=WIDTH).init(
      jax.random.key(0), b, train=False), {'image': _batch(32)['image']})
  emonet = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), emonet)
  target = aunets.Model(1, width_multiplier=WIDTH)
  mapped = aunets.adapt_params(target, emonet['params'], _abstract(target, 32))
  assert set(mapped) == {'encoder', 'fc6', 'fc7'}


def test_loss_is_two_way_softmax_cross_entropy_by_hand():
  # Two frames, one AU: 2-way scores (absent, present) chosen by hand.
  pairs = np.array([[[0.2, 1.5]], [[2.0, -1.0]], [[0.0, 0.0]]], np.float32)
  labels = np.array([[1], [1], [-1]])
  # -log softmax: frame 0 present: log(1 + e^(0.2 - 1.5));
  # frame 1 present: log(1 + e^(2 + 1)); frame 2 unknown.
  expected = (np.log1p(np.exp(-1.3)) + np.log1p(np.exp(3.0))) / 2
  logits = pairs[..., 1] - pairs[..., 0]
  config = ml_collections.ConfigDict({'aus': [12]})
  loss, scalars = jax.vmap(
      lambda l, y: aunets_method.loss_fn(
          (l, {'two_way_logits': pairs}), {'au_occurrence': y}, config),
      axis_name='batch')(logits[None], labels[None])
  np.testing.assert_allclose(loss[0], expected, rtol=1e-6)
  np.testing.assert_allclose(scalars['au_loss_12'][0], expected, rtol=1e-6)
  log_softmax = jax.nn.log_softmax(pairs[:2, 0], axis=-1)
  np.testing.assert_allclose(-log_softmax[:, 1].mean(), expected, rtol=1e-6)


def test_config_variant_sets_fusion_flow_and_frozen_together():
  # pylint: disable=g-import-not-at-top
  from au_jax import models
  from au_jax import optim
  from configs import aunets as aunets_config
  config = aunets_config.get_config('paper-pi_fc6')
  assert (config.model.fusion, config.flow) == ('pi_fc6', True)
  assert config.one_model_per == ('au',)
  assert (config.adam_b1, config.adam_b2, config.learning_rate,
          config.lr_schedule) == (0.5, 0.999, 1e-4, 'linear')
  config.aus = (12,)  # One run = one AU.
  params = _abstract(models.create(config), 224)
  mults = optim.learning_rate_multipliers(config, params)
  learnable = sum(int(np.prod(p.shape)) for p, m in zip(
      jax.tree.leaves(params), jax.tree.leaves(mults)) if m)
  assert learnable == 151_045_954  # Table 3: 151m.
  rgb = aunets_config.get_config('test')
  assert (rgb.model.fusion, rgb.flow, rgb.frozen) == ('rgb', False, '')
  with pytest.raises(ValueError, match="unknown variant 'paper-late'"):
    aunets_config.get_config('paper-late')


# ----------------------------------------------------------------------------
# Flow as data (issue 11, item 1).

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
  from au_jax import device_transforms  # pylint: disable=g-import-not-at-top
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
  from configs import aunets as aunets_config  # pylint: disable=g-import-not-at-top
  config = aunets_config.get_config('test-channels')
  config.data_dir = data_dir
  config.init_from = None  # No EmoNet run in these tests.
  for field, value in overrides.items():
    config[field] = value
  return config


def test_pipeline_flow_is_the_flow_to_the_next_frame(tiny_data_dir):
  from au_jax import input_pipeline  # pylint: disable=g-import-not-at-top
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
  import dataclasses  # pylint: disable=g-import-not-at-top
  from au_jax import aus as aus_lib  # pylint: disable=g-import-not-at-top
  from data_builders.synthetic_au import config as synth_config  # pylint: disable=g-import-not-at-top
  from data_builders.synthetic_au import generate  # pylint: disable=g-import-not-at-top
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
# Runs: weights-only finished runs, the disk plan, resuming a per-AU plan
# (issue 11, items 3 and 7).

def test_plan_disk_of_the_paper_plan_by_hand():
  from au_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from configs import aunets as aunets_config  # pylint: disable=g-import-not-at-top
  sizes = checkpointing.plan_disk_bytes(aunets_config.get_config('paper'))
  weights = 134_268_738 * 4  # VGG-16 with a 2-way output, float32.
  assert sizes['params'] == sizes['weights_only'] == weights
  # Adam: two moments per parameter, plus int32 step counts (Adam's and
  # the schedule's).
  assert 2 * weights < sizes['optimizer'] <= 2 * weights + 16
  assert sizes['runs'] == 12 * 3  # BP4D's 12 AUs x 3 folds.
  # 35 finished runs (weights only) + the running one's latest, best and
  # the step being written: 35 x 0.54 + 3 x 1.61 GB.
  assert sizes['peak'] == 35 * weights + 3 * sizes['full']
  assert sizes['full'] == weights + sizes['optimizer']
  assert sizes['peak'] < 64e9 < 2 * 36 * sizes['full']


def test_flow_plan_trains_keeps_weights_only_and_resumes(
    tiny_data_dir, tmp_path, monkeypatch, capsys):
  """A Channels (RGB + flow) per-AU plan trains end to end and a finished AU
  keeps only its best weights. Rerun, the finished AU is not trained again
  (its stored results make the fold); with one more AU the plan skips the
  finished AU and goes on to train the new one."""
  from au_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from au_jax import runs  # pylint: disable=g-import-not-at-top
  from au_jax import train  # pylint: disable=g-import-not-at-top
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
