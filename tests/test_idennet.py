"""IdenNet: MFM, LightCNN sizes, the subtraction head, the triplet loss on
hand-made embeddings, mixed batches and 8-device = 1-device."""

import json
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax.data import input_pipeline
from au_jax import models
from au_jax import prepare
from au_jax.methods import idennet as method
from au_jax.models import idennet
from au_jax.models import lightcnn
from configs import idennet as idennet_config

import multidevice  # pylint: disable=g-import-not-at-top
from au_jax import visualize
import matplotlib.image



def _count(variables) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(
      variables))


def test_max_feature_map_takes_the_larger_half():
  x = jnp.array([[1.0, -2.0, 5.0, 0.5, 3.0, -1.0]])  # halves [1,-2,5], [.5,3,-1]
  np.testing.assert_array_equal(lightcnn.max_feature_map(x), [[1.0, 3.0, 5.0]])
  with pytest.raises(ValueError, match='even channel count'):
    lightcnn.max_feature_map(jnp.zeros([1, 3]))


def test_ceil_pool_keeps_the_odd_edge():
  x = jnp.arange(9.0).reshape(1, 3, 3, 1) - 20.0  # all negative
  ceil = lightcnn.max_pool_2x2(x, ceil_mode=True)[0, ..., 0]
  floor = lightcnn.max_pool_2x2(x, ceil_mode=False)[0, ..., 0]
  # Windows {0,1,3,4}, {2,5}, {6,7}, {8} (-20 offset): Caffe's ceil layout.
  np.testing.assert_array_equal(ceil, [[-16.0, -15.0], [-13.0, -12.0]])
  np.testing.assert_array_equal(floor, [[-16.0]])
  assert lightcnn.trunk_output_size(128, True) == 5
  assert lightcnn.trunk_output_size(128, False) == 4


@pytest.mark.parametrize('ceil_pool,grayscale,expected', [
    (True, False, 6_574_796), (False, False, 4_805_324),
    (True, True, 6_559_244), (False, True, 4_789_772)])
def test_parameter_count_at_128(ceil_pool, grayscale, expected):
  # Reference: "about 6.56M with ceil, 4.79M with floor" (grayscale input).
  model = idennet.Model(num_aus=12, ceil_pool=ceil_pool, grayscale=grayscale)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), {'image': jnp.zeros([1, 128, 128, 3])}, train=False))
  assert _count(shapes) == expected


@pytest.mark.parametrize('variant,expected', [
    ('paper', 6_574_796), ('', 1_856_204), ('test', 1_668_044)])
def test_config_parameter_counts(variant, expected):
  config = idennet_config.get_config(variant)
  model = models.create(config)
  size = config.crop_size
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), {'image': jnp.zeros([1, size, size, 3])},
      train=False))
  assert _count(shapes) == expected  # As stated in the config docstring.


def test_too_small_input_is_named():
  model = idennet.Model(num_aus=3, hidden_size=8)
  with pytest.raises(ValueError, match='at least 57'):
    model.init(jax.random.key(0), {'image': jnp.zeros([1, 56, 56, 3])},
               train=False)


@pytest.fixture(scope='module')
def tiny_model():
  model = idennet.Model(num_aus=3, hidden_size=16)
  batch = {'image': jax.random.normal(jax.random.key(1), [2, 60, 60, 3])}
  variables = model.init(jax.random.key(0), batch, train=False)
  return model, variables, batch


def test_classifier_sees_fc6_minus_unit_embedding(tiny_model):
  model, variables, batch = tiny_model
  logits, aux = model.apply(variables, batch, train=False)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(
      np.linalg.norm(aux['embedding'], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(aux['features'], aux['fc6'] - aux['embedding'],
                             atol=1e-6)
  # Same weights without the subtraction: the logits move by -e @ W.
  plain, _ = model.clone(subtract_identity=False).apply(
      variables, batch, train=False)
  kernel = variables['params']['output']['kernel']
  np.testing.assert_allclose(logits - plain, -aux['embedding'] @ kernel,
                             atol=1e-5)


def test_no_identity_branch_has_no_fc5():
  model = idennet.Model(num_aus=3, hidden_size=16, identity_branch=False)
  batch = {'image': jnp.zeros([1, 60, 60, 3])}
  variables = model.init(jax.random.key(0), batch, train=False)
  assert 'fc5' not in variables['params']
  _, aux = model.apply(variables, batch, train=False)
  assert 'embedding' not in aux
  np.testing.assert_array_equal(aux['features'], aux['fc6'])


def test_hardest_negatives_then_random_ones():
  similarity = jnp.array([[0.9, 0.8, 0.1, 0.7, -0.2, 0.3]])
  negative = jnp.array([[False, True, True, True, True, True]])
  keys = jax.random.split(jax.random.key(0), 1)
  select = jax.jit(method.select_negatives, static_argnums=3)
  chosen = np.asarray(select(similarity, negative, keys, 4))
  # Column 0 (the largest cosine) is not a negative; the hardest negatives
  # are columns 1 (0.8) and 3 (0.7); two more come from {2, 4, 5}.
  assert chosen[0, 0] == 0 and chosen[0, 1] == 1 and chosen[0, 3] == 1
  assert chosen.sum() == 4 and chosen[0, [2, 4, 5]].sum() == 2
  # Different keys pick different random negatives (some of 8 keys do).
  picks = {tuple(np.asarray(select(
      similarity, negative, jax.random.split(jax.random.key(s), 1), 4))[0])
           for s in range(8)}
  assert len(picks) > 1
  # Only two negatives: both used, nothing invented.
  few = jnp.array([[False, True, False, False, True, False]])
  chosen = np.asarray(select(similarity, few, keys, 4))
  np.testing.assert_array_equal(chosen, few.astype(np.float32))


def _unit(angle_degrees):
  angle = np.deg2rad(angle_degrees)
  return np.array([np.cos(angle), np.sin(angle)], np.float32)


def test_triplet_terms_by_hand():
  # Rows: anchor A and its positive P (person 0); negatives of person 1, 2, 3
  # and an unknown row U that must be ignored even though it is closest.
  angles = [0.0, 40.0, 30.0, 120.0, 180.0, 1.0]
  identity = np.array([0, 0, 1, 2, 3, -1])
  embedding = jnp.asarray(np.stack([_unit(a) for a in angles]))
  keys = jax.random.split(jax.random.key(0), 6)
  triplets = jax.jit(method.triplet_terms, static_argnums=(6, 7))
  total, count, active = triplets(
      embedding, jnp.asarray(identity), jnp.arange(6), embedding,
      jnp.asarray(identity), keys, 0.5, 4)
  cos = np.cos(np.deg2rad(np.subtract.outer(angles, angles)))
  expected, terms, violations = 0.0, 0, 0
  for a, p in ((0, 1), (1, 0)):  # Only person 0 has a pair.
    for n in (2, 3, 4):  # 3 negatives < 4: all used.
      hinge = max(0.0, 0.5 - cos[a, p] + cos[a, n])
      expected += hinge
      terms += 1
      violations += hinge > 0
  assert int(count) == terms == 6
  assert int(active) == violations
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)
  # Margin respected: negatives far enough away give exactly 0.
  far = jnp.asarray(np.stack([_unit(0), _unit(10), _unit(150),
                              _unit(200)]))
  ids = jnp.array([0, 0, 1, 2])
  total, count, active = triplets(
      far, ids, jnp.arange(4), far, ids, jax.random.split(
          jax.random.key(0), 4), 0.5, 4)
  assert float(total) == 0.0 and int(count) == 4 and int(active) == 0


def _config():
  return idennet_config.get_config('test')


def test_loss_fn_averages_au_loss_over_au_rows_only():
  logits = jnp.array([[2.0, -1.0], [0.5, 0.0], [3.0, 3.0], [3.0, 3.0]])
  labels = jnp.array([[1, 0], [-1, 1], [-1, -1], [-1, -1]])
  batch = {'au_occurrence': labels,
           'is_identity_row': jnp.array([False, False, True, True]),
           'identity': jnp.array([-1, -1, 4, 4])}
  loss, scalars = method.loss_fn((logits, {}), batch, _config())
  log_sigmoid = jax.nn.log_sigmoid
  expected = -(log_sigmoid(2.0) + log_sigmoid(1.0) + log_sigmoid(0.0)) / 2
  np.testing.assert_allclose(float(scalars['au_loss']), float(expected),
                             rtol=1e-6)
  assert float(scalars['triplet_loss']) == 0.0  # No embedding: no triplets.
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)


def test_loss_fn_needs_identities_for_the_triplet_loss():
  aux = {'embedding': jnp.eye(2)}
  batch = {'au_occurrence': jnp.zeros([2, 2], jnp.int32)}
  with pytest.raises(ValueError, match="batch\\['identity'\\]"):
    method.loss_fn((jnp.zeros([2, 2]), aux), batch, _config())


def test_rows_per_device():
  config = _config()
  config.batch_size = 32
  assert method.rows_per_device(config, 1) == (16, 8)
  assert method.rows_per_device(config, 8) == (2, 1)
  config.batch_size = 16
  with pytest.raises(ValueError, match='at least 3'):
    method.rows_per_device(config, 8)


def test_mixed_batches_layout_and_exact_resume(tiny_data_dir):
  config = _config()
  config.data_dir = tiny_data_dir
  config.batch_size = 12  # 2 devices x (2 AU frames + 2 pairs)
  config.identity_share = 0.6
  builder = prepare.get_builder('synthetic_au', 'tiny', tiny_data_dir)
  data = input_pipeline.fold_data(config, builder, 1)
  batches = method.train_batches(config, data, seed=3, devices=2)
  first = next(batches)
  # Both streams send resized uint8 faces; the step crops them on device.
  assert first['image'].shape == (12, config.resize_size,
                                  config.resize_size, 3)
  assert first['image'].dtype == np.uint8
  is_identity = first['is_identity_row'].reshape(2, 6)
  np.testing.assert_array_equal(is_identity, [[0, 0, 1, 1, 1, 1]] * 2)
  identity = first['identity'].reshape(2, 6)
  assert (identity[:, :2] == -1).all()
  pairs = identity[:, 2:].reshape(2, 2, 2)
  assert (pairs[..., 0] == pairs[..., 1]).all() and (pairs >= 0).all()
  occurrence = first['au_occurrence'].reshape(2, 6, -1)
  assert (occurrence[:, 2:] == -1).all() and (occurrence[:, :2] >= 0).any()
  assert len(set(first['triplet_seed'].tolist())) == 1
  state = batches.get_state()
  assert set(json.loads(state)) == {'step', 'au', 'identity'}
  expected = [next(batches) for _ in range(2)]
  # A fresh iterator restored from the state continues identically.
  again = method.train_batches(config, data, seed=3, devices=2)
  again.set_state(state)
  for want in expected:
    got = next(again)
    assert sorted(got) == sorted(want)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert expected[0]['triplet_seed'][0] != first['triplet_seed'][0]



def test_au_subject_pairs_pair_frames_of_one_subject(tiny_data_dir):
  config = _config()
  config.data_dir = tiny_data_dir
  config.au_subject_pairs = True
  config.batch_size = 12  # 2 devices x (2 AU frames = 1 pair + 2 pairs)
  config.identity_share = 0.6
  builder = prepare.get_builder('synthetic_au', 'tiny', tiny_data_dir)
  data = input_pipeline.fold_data(config, builder, 1)
  # The subject place of each training record, against the records' own
  # subject field.
  source = input_pipeline.split_source(data, 'train')
  rows = method.training_subject_rows(data)
  subjects = [source[i]['subject'] for i in range(len(source))]
  subjects = [x.decode() if isinstance(x, bytes) else str(x)
              for x in subjects]
  train = [str(x) for x in data.subjects.train]
  assert [train[r] for r in rows] == subjects
  stream = method.au_subject_pairs(config, data, num_pairs=3, seed=5)
  batch = next(stream)
  identity = batch['subject_identity']
  assert identity.shape == (6,)
  assert (identity[0::2] == identity[1::2]).all()
  assert (identity >= method.AU_SUBJECT_IDENTITY_BASE).all()
  assert (identity - method.AU_SUBJECT_IDENTITY_BASE < len(train)).all()
  # Two distinct frames of the pair (different images).
  assert all((batch['image'][2 * k] != batch['image'][2 * k + 1]).any()
             for k in range(3))
  # In the mixed batch every AU row has its subject as identity, the two
  # rows of a device are one pair, and the identity faces keep theirs.
  mixed = next(method.train_batches(config, data, seed=3, devices=2))
  identity = mixed['identity'].reshape(2, 6)
  assert (identity[:, 0] == identity[:, 1]).all()
  assert (identity[:, :2] >= method.AU_SUBJECT_IDENTITY_BASE).all()
  assert (identity[:, 2:] < method.AU_SUBJECT_IDENTITY_BASE).all()
  assert (identity[:, 2:] >= 0).all()
  assert 'subject_identity' not in mixed
  # An odd number of AU rows per device cannot be whole pairs.
  config.batch_size = 10  # 2 devices x (3 AU frames + 1 pair)
  config.identity_share = 0.4
  with pytest.raises(ValueError, match='same-subject pairs'):
    method.train_batches(config, data, seed=3, devices=2)


def test_triplet_loss_on_au_subject_pairs_by_hand():
  """Rows: AU frames of subjects A, A, B, B at angles 0, 53.13, 90, 180
  degrees. cos: (0,1) .6, (0,2) 0, (0,3) -1, (1,2) .8, (1,3) -.6, (2,3) 0.
  Hinge max(0, .5 - cos(a, p) + cos(a, n)):
    a0 (p1): n2 -.1 -> 0, n3 -1.1 -> 0;  a1 (p0): n2 .7, n3 -.7 -> 0;
    a2 (p3): n0 .5, n1 1.3;              a3 (p2): n0 -.5 -> 0, n1 -.1 -> 0.
  8 triplets, sum 2.5: loss 0.3125, 3 active. Without the subject pairing
  (identity -1 on AU rows, as before) no AU row is in any triplet."""
  base = method.AU_SUBJECT_IDENTITY_BASE
  embedding = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
  au = {'au_occurrence': np.zeros([4, 2], np.int32),
        'image': np.zeros([4, 1], np.float32),
        'subject_identity': np.array([base, base, base + 1, base + 1],
                                     np.int32)}
  faces = {'au_occurrence': np.full([2, 2], -1, np.int32),
           'image': np.zeros([2, 1], np.float32),
           'identity': np.array([7, 7], np.int32)}
  batch = next(method.mixed_batches(iter([au]), iter([faces]), 4, 1, 1))
  np.testing.assert_array_equal(batch['identity'],
                                [base, base, base + 1, base + 1, 7, 7])
  config = _config()
  config.num_negatives = 4
  # The AU rows alone (the identity pair's embeddings left out).
  rows = {k: jnp.asarray(v[:4]) for k, v in batch.items()}
  _, scalars = method.loss_fn((jnp.zeros([4, 2]), {'embedding': embedding}),
                              rows, config)
  assert float(scalars['num_triplets']) == 8
  np.testing.assert_allclose(float(scalars['triplet_loss']), 2.5 / 8,
                             rtol=1e-6)
  np.testing.assert_allclose(float(scalars['triplet_active']), 3 / 8,
                             rtol=1e-6)
  unpaired = dict(rows, identity=jnp.full([4], -1, jnp.int32))
  _, scalars = method.loss_fn((jnp.zeros([4, 2]), {'embedding': embedding}),
                              unpaired, config)
  assert float(scalars['num_triplets']) == 0
  assert float(scalars['triplet_loss']) == 0.0

# Runs in a fresh process: the host device count is fixed at JAX start-up.
_SCRIPT = textwrap.dedent("""
    import flax.jax_utils, jax, jax.numpy as jnp, numpy as np
    jax.config.update('jax_disable_most_optimizations', True)
    from au_jax import parallel
    from au_jax.methods import idennet as method
    from au_jax.models import idennet
    from configs import idennet as idennet_config
    assert jax.local_device_count() == 8, jax.devices()

    config = idennet_config.get_config('test')
    rng = np.random.default_rng(0)
    # 8 devices x (1 AU frame + 1 pair of person 10 + d) = 24 rows, laid out
    # as idennet_method.mixed_batches does.
    identity = np.stack([[-1, 10 + d, 10 + d] for d in range(8)]).reshape(-1)
    batch = {
        'features': rng.normal(size=(24, 6)).astype(np.float32),
        'au_occurrence': np.where(identity[:, None] < 0, rng.integers(
            -1, 2, size=(24, 12)), -1).astype(np.int32),
        'identity': identity.astype(np.int32),
        'is_identity_row': identity >= 0,
        'triplet_seed': np.full([24], 7, np.int32),
    }
    # The model has no cross-device parts: a linear stand-in for the
    # network keeps the compile short; the loss is IdenNet's.
    params = {'embed': rng.normal(size=(6, 4)).astype(np.float32),
              'output': rng.normal(size=(6, 12)).astype(np.float32)}

    def step(params, batch):
      def loss(params):
        embedding = idennet.l2_normalise(batch['features'] @ params['embed'])
        logits = batch['features'] @ params['output']
        return method.loss_fn((logits, {'embedding': embedding}), batch,
                              config)
      grads, scalars = jax.grad(loss, has_aux=True)(params)
      return jax.lax.pmean((grads, scalars), parallel.AXIS_NAME)

    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      n = len(devices)
      p_step = jax.pmap(step, axis_name=parallel.AXIS_NAME, devices=devices)
      sharded = {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}
      out = p_step(flax.jax_utils.replicate(params, devices), sharded)
      results.append(jax.device_get(jax.tree_util.tree_map(lambda x: x[0], out)))
    (g1, s1), (g8, s8) = results
    worst = max(float(np.max(np.abs(g1[k] - g8[k]))) for k in g1)
    size = min(float(np.max(np.abs(g1[k]))) for k in g1)
    print('RESULT', worst, size, float(s1['triplet_loss']),
          float(s8['triplet_loss']), float(s1['au_loss']), float(s8['au_loss']),
          float(s1['num_triplets']), float(s8['num_triplets']))
    """)


def test_eight_devices_equal_one_device():
  worst, size, t1, t8, a1, a8, n1, n8 = map(
      float, multidevice.run_script(_SCRIPT))
  # 16 anchors (both faces of 8 pairs), one positive each, 14 negatives of
  # which 4 are used; the AU frames are in no triplet.
  assert n1 == n8 == 16 * 4
  assert t1 > 0 and a1 > 0 and size > 1e-4  # Both losses move both weights.
  np.testing.assert_allclose([t8, a8], [t1, a1], rtol=1e-5)
  assert worst < 1e-5 * max(size, 1.0), (worst, size)


# ---------------------------------------------------------------- t-SNE figure


def test_same_subject_neighbour_rate_by_hand():
  features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  # Nearest by cosine: 0<->1, 2<->3.
  assert visualize.same_subject_neighbour_rate(features, list('aabb')) == 1.0
  assert visualize.same_subject_neighbour_rate(features, list('abab')) == 0.0
  # Rows 0 and 1 are each other's nearest (subjects a, b: misses); rows 2
  # and 3 (both b) hit.
  assert visualize.same_subject_neighbour_rate(
      features, list('abbb')) == 0.5
  with pytest.raises(ValueError, match='3 subjects'):
    visualize.same_subject_neighbour_rate(features, list('abb'))
  # Subjects a a a b in videos v v w x. Rows 0 and 1 may not pick each
  # other (same video): both go to row 3 (cosine 0.11 and 0.22 vs 0 and
  # 0.11 for row 2), subject b: misses. Row 2 -> row 3 (0.99): miss; row
  # 3 -> row 2: miss.
  assert visualize.same_subject_neighbour_rate(
      features, list('aaab'), videos=list('vvwx')) == 0.0
  # Same subjects without the video rule: rows 0, 1 hit each other, 2 -> 3
  # miss, 3 -> 2 miss.
  assert visualize.same_subject_neighbour_rate(features, list('aaab')) == 0.5
  with pytest.raises(ValueError, match='one id per frame'):
    visualize.same_subject_neighbour_rate(features, list('aabb'), list('v'))
  with pytest.raises(ValueError, match='no other video'):
    visualize.same_subject_neighbour_rate(features, list('aabb'), list('vvvv'))


def test_feature_tsne_figure_with_and_without_identity(tmp_path):
  rng = np.random.default_rng(0)
  subjects = np.repeat(['S01', 'S02', 'S03'], 10)
  centres = rng.normal(size=(3, 8)) * 5
  au = rng.integers(0, 2, size=30)
  au[:3] = -1
  with_identity = centres[np.repeat(np.arange(3), 10)] + rng.normal(
      size=(30, 8)) * 0.1
  without = rng.normal(size=(30, 8))
  path = str(tmp_path / 'tsne.png')
  rates = visualize.plot_feature_tsne(
      {'identity in features': with_identity, 'identity removed': without},
      subjects, au, 12, path)
  assert rates['identity in features'] == 1.0
  assert rates['identity removed'] == visualize.same_subject_neighbour_rate(
      without, subjects)
  height, width = matplotlib.image.imread(path).shape[:2]
  assert width > height > 300  # Two rows, two columns and a legend.
  with pytest.raises(ValueError, match='20 rows'):
    visualize.plot_feature_tsne({'x': without[:20]}, subjects, au, 12, path)


def test_tsne_without_scikit_learn_is_named(monkeypatch):
  monkeypatch.setitem(sys.modules, 'sklearn', None)
  with pytest.raises(ImportError, match='needs scikit-learn'):
    visualize.tsne_2d(np.zeros((5, 2)))


def test_triplet_activity_from_metrics_by_hand(tmp_path):
  # Logged every 10 steps up to 100: the first value, and the mean of the
  # steps after 100 - 50 (60, 70, 80, 90, 100).
  rows = [{'step': s, 'triplet_active': 1.0 - s / 200} for s in range(10, 101, 10)]
  rows.insert(3, {'step': 35, 'validation_f1': 40.0})  # other rows ignored
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write('\n'.join(json.dumps(r) for r in rows) + '\n')
  got = method.triplet_activity(str(tmp_path))
  assert got['triplet_active_first'] == pytest.approx(0.95)
  assert got['triplet_active_last'] == pytest.approx(1.0 - 80 / 200)
  assert method.triplet_activity(str(tmp_path / 'none')) == {}
