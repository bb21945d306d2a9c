"""CAUD / HydraNet: head modularity, joining, sizes, and its loss."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax.methods import caud as caud_method
from au_jax.models import caud
from au_jax.models import vgg
from au_jax.predict import run as predict_run
from au_jax import optim
from configs import caud as caud_config
import os
from au_jax import checkpointing
import json
from au_jax import models, runs, train
from configs import drml as drml_config

jax.config.update('jax_disable_most_optimizations', True)

WIDTH = 1 / 16
FROZEN = '^encoder/.*'  # configs/caud.py


def _paths(tree):
  return {'/'.join(k.key for k in path): int(np.prod(leaf.shape))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_hydranet_sizes_at_full_size():
  batch = {'image': jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)}
  params = jax.eval_shape(
      lambda b: caud.Model(12).init(jax.random.key(0), b, train=False),
      batch)['params']
  sizes = _paths(params)
  learnable = sum(n for path, n in sizes.items() if not re.match(FROZEN, path))
  frozen = sum(n for path, n in sizes.items() if re.match(FROZEN, path))
  assert frozen == 14_714_688  # VGG-16's 13 convs.
  # One head: fc6 25088*4096+4096, fc7 4096*4096+4096, 2-way output 8,194;
  # AUNets table 3 / thesis: learnable "119m" / "119.55M" per AU.
  assert learnable == 12 * 119_554_050
  # Table 3, HydraNets, 12 models: 1443m (one VGG + 11 heads at 134m/119m).
  assert abs(frozen + learnable - 1443e6) / 1443e6 < 0.01
  assert set(params) == {'encoder'} | {f'head_{i}' for i in range(12)}
  assert set(params['head_3']) == {'fc6', 'fc7', 'output'}


@pytest.fixture(scope='module')
def three_heads():
  model = caud.Model(3, width_multiplier=WIDTH)
  batch = {'image': jax.random.normal(jax.random.key(1), (4, 32, 32, 3))}
  params = model.init(jax.random.key(0), batch, train=False)['params']
  return params, batch


def _logits(num_aus, params, batch):
  model = caud.Model(num_aus, width_multiplier=WIDTH)
  return np.asarray(jax.jit(lambda p, b: model.apply(
      {'params': p}, b, train=False)[0])(params, batch))


def test_growing_a_head_leaves_other_outputs_bit_identical(three_heads):
  params, batch = three_heads
  two = caud.select_heads(params, [0, 1])
  before = _logits(2, two, batch)
  grown = caud.join_heads([two, caud.select_heads(params, [2])])
  after = _logits(3, grown, batch)
  np.testing.assert_array_equal(after[:, :2], before)
  assert not np.allclose(after[:, 2], after[:, 0])


def test_per_au_runs_join_into_one_pass_model(three_heads):
  params, batch = three_heads
  per_au = [caud.select_heads(params, [i]) for i in range(3)]
  assert all(set(tree) == {'encoder', 'head_0'} for tree in per_au)
  joined = caud.join_heads(per_au)
  jax.tree.map(np.testing.assert_array_equal, joined, params)
  together = _logits(3, joined, batch)
  for index, tree in enumerate(per_au):
    np.testing.assert_array_equal(_logits(1, tree, batch)[:, 0],
                                  together[:, index])
  # Heads trained on another encoder cannot share this one.
  other = jax.tree.map(lambda x: x, per_au[1])
  other['encoder'] = dict(other['encoder'])
  other['encoder']['conv3_2'] = {
      'kernel': other['encoder']['conv3_2']['kernel'] + 1e-3,
      'bias': other['encoder']['conv3_2']['bias']}
  with pytest.raises(ValueError, match=r"tree 1 encoder leaf.*conv3_2"):
    caud.join_heads([per_au[0], other])
  with pytest.raises(ValueError, match='Not a CAUD parameter tree'):
    caud.join_heads([{'encoder': params['encoder'], 'fc6': {}}])


def test_adapt_params_starts_every_head_from_emonet_fc_layers(three_heads):
  params, batch = three_heads
  emonet = vgg.Model(8, width_multiplier=WIDTH)
  source = emonet.init(jax.random.key(5), batch, train=False)['params']
  mapped = caud.adapt_params(caud.Model(3, width_multiplier=WIDTH), source,
                             params)
  assert set(mapped) == {'encoder', 'head_0', 'head_1', 'head_2'}
  for index in range(3):
    assert set(mapped[f'head_{index}']) == {'fc6', 'fc7'}  # Output: own.
    np.testing.assert_array_equal(mapped[f'head_{index}']['fc6']['kernel'],
                                  source['fc6']['kernel'])
  np.testing.assert_array_equal(mapped['encoder']['conv1_1']['kernel'],
                                source['encoder']['conv1_1']['kernel'])
  wide_model = caud.Model(1, width_multiplier=2 * WIDTH)
  wide = jax.eval_shape(lambda b: wide_model.init(
      jax.random.key(0), b, train=False), batch)['params']
  with pytest.raises(ValueError, match=r"'encoder'\]\['conv1_1'\].*shape"):
    caud.adapt_params(wide_model, source, wide)


def test_frozen_trunk_joint_heads_get_their_isolated_gradients(three_heads):
  params, batch = three_heads
  labels = jnp.array([[1, 0, -1], [0, -1, 1], [1, 1, 0], [-1, 0, 0]])
  config = ml_collections.ConfigDict({'aus': [1, 2, 4]})

  def head_grads(num_aus, tree, columns):
    model = caud.Model(num_aus, width_multiplier=WIDTH)

    def loss(heads):
      outputs = model.apply({'params': {**tree, **heads}}, batch, train=False)
      return caud_method.loss_fn(
          outputs, {'au_occurrence': labels[:, columns]},
          ml_collections.ConfigDict({'aus': [config.aus[c] for c in columns]}
                                    ))[0]
    heads = {k: v for k, v in tree.items() if k != 'encoder'}
    return jax.vmap(jax.grad(loss), axis_name='batch')(
        jax.tree.map(lambda x: x[None], heads))

  joint = head_grads(3, params, [0, 1, 2])
  for index in range(3):
    alone = head_grads(1, caud.select_heads(params, [index]), [index])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7),
                 joint[f'head_{index}'], alone['head_0'])


def _loss(logits, labels, devices=1, mask=None):
  """caud loss over `devices` simulated devices (vmap with the axis name)."""
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels)
  split = lambda x: x.reshape((devices, -1) + x.shape[1:])
  args = [split(logits), split(labels)]
  if mask is not None:
    args.append(split(jnp.asarray(mask)))
  return jax.vmap(lambda *a: caud_method.per_au_cross_entropy(*a),
                  axis_name='batch')(*args)


def test_loss_values_by_hand():
  logits = [[0.0, 2.0], [1.0, -1.0], [3.0, -2.0], [0.5, 0.5]]
  labels = [[1, -1], [0, 1], [-1, 0], [-1, -1]]
  device_loss, total, per_au = _loss(logits, labels)
  # AU a: rows 0 (present, logit 0): log 2; 1 (absent, logit 1): log(1+e).
  au_a = (np.log(2.0) + np.log1p(np.e)) / 2
  # AU b: rows 1 (present, logit -1): log(1+e); 2 (absent, -2): log(1+e^-2).
  au_b = (np.log1p(np.e) + np.log1p(np.exp(-2.0))) / 2
  np.testing.assert_allclose(per_au[0], [au_a, au_b], rtol=1e-6)
  np.testing.assert_allclose(total[0], au_a + au_b, rtol=1e-6)
  np.testing.assert_allclose(device_loss[0], au_a + au_b, rtol=1e-6)
  # Padding rows (mask False) are unknown labels, not negatives.
  _, padded, _ = _loss(logits + [[9.0, 9.0]], labels + [[0, 0]],
                       mask=[True] * 4 + [False])
  np.testing.assert_allclose(padded[0], au_a + au_b, rtol=1e-6)
  # All unknown: zero loss and zero gradient, never NaN.
  grad = jax.grad(lambda x: _loss(x, [[-1, -1]] * 4)[0].sum())(
      jnp.asarray(logits))
  assert float(_loss(logits, [[-1, -1]] * 4)[1][0]) == 0.0
  np.testing.assert_array_equal(grad, 0.0)


def test_four_devices_equal_one_device():
  rng = np.random.default_rng(0)
  features = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(-1, 2, size=(8, 2)))
  labels = labels.at[:4, 1].set(-1)  # Uneven known counts across devices.
  weights = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)

  def grad_on(devices):
    def device(w, x, y):
      return caud_method.per_au_cross_entropy(x @ w, y)[0]
    grads = jax.vmap(jax.grad(device), in_axes=(None, 0, 0),
                     axis_name='batch')(
                         weights, features.reshape(devices, -1, 3),
                         labels.reshape(devices, -1, 2))
    return grads.mean(axis=0)  # The trainer's pmean over devices.

  np.testing.assert_allclose(grad_on(4), grad_on(1), rtol=1e-5, atol=1e-7)
  _, total_one, _ = _loss(features @ weights, labels, devices=1)
  _, total_four, _ = _loss(features @ weights, labels, devices=4)
  np.testing.assert_allclose(total_four, total_one[0], rtol=1e-6)


def test_loss_fn_scalars_and_au_count_check():
  config = ml_collections.ConfigDict({'aus': [6, 12]})
  outputs = (jnp.zeros((2, 2)), {})
  batch = {'au_occurrence': jnp.array([[1, 0], [0, 1]])}
  loss, scalars = jax.vmap(
      lambda b: caud_method.loss_fn(outputs, b, config), axis_name='batch')(
          jax.tree.map(lambda x: x[None], batch))
  np.testing.assert_allclose(loss[0], 2 * np.log(2.0), rtol=1e-6)
  assert set(scalars) == {'au_loss', 'au_loss_06', 'au_loss_12'}
  with pytest.raises(ValueError, match=r'config.aus has 1 AUs: \(6,\)'):
    caud_method.loss_fn(outputs, batch, ml_collections.ConfigDict(
        {'aus': [6]}))


def test_caud_configs_freeze_exactly_the_encoder():
  for variant in ('', 'paper', 'test'):
    config = caud_config.get_config(variant)
    model = models.create(config)
    batch = {'image': jax.ShapeDtypeStruct(
        (1, config.crop_size, config.crop_size, 3), jnp.float32)}
    params = jax.eval_shape(lambda b, m=model: m.init(
        jax.random.key(0), b, train=False), batch)['params']
    mults = optim.learning_rate_multipliers(config, params)
    for path, mult in jax.tree_util.tree_leaves_with_path(mults):
      name = '/'.join(k.key for k in path)
      assert (mult == 0) == name.startswith('encoder/'), name
      # init_from takes the encoder and the heads' fc6/fc7, not the outputs.
      assert bool(re.fullmatch(config.init_from.params, name)) == (
          '/output/' not in name), name
  assert caud_config.get_config('paper').init_from.au == 'none'  # Per AU.


def _save_run(directory, config, state):
  """A run directory as the trainer leaves it (config.json, checkpoint)."""
  os.makedirs(directory)
  checkpointing.write_config(config, directory)
  manager = checkpointing.create_manager(directory)
  checkpointing.save(manager, 1, state, {}, checkpointing.fingerprint(config),
                     {checkpointing.BEST_METRIC: 1.0})
  manager.close()


def test_predict_joins_per_au_runs_into_one_pass(tmp_path):
  """predict_run.load_run on a fold directory of per-AU CAUD runs: one model,
  every AU in one forward pass, each output equal to its own run's, each
  AU with its own run's threshold and window."""
  base = caud_config.get_config('test')
  base.one_model_per = ('au',)
  base.aus = (1, 12)
  fold_dir = tmp_path / 'fold_1'
  encoder = None
  rules = {1: (0.3, 1), 12: (0.6, 3)}
  states = {}
  for seed, au in enumerate(base.aus):
    config = runs.run_config(base, runs.RunKey(1, au=au))
    state = train.create_train_state(config, models.create(config),
                                     jax.random.key(seed))
    states[au] = state
    params = dict(state.params)
    if encoder is None:
      encoder = params['encoder']
    params['encoder'] = encoder  # The shared frozen EmoNet trunk.
    directory = str(fold_dir / f'au_{au:02d}')
    _save_run(directory, config, state.replace(params=params))
    threshold, window = rules[au]
    with open(f'{directory}/test_results.json', 'w') as f:
      json.dump({'median_window': window,
                 'per_au': {str(au): {'threshold': threshold}}}, f)
  joined = predict_run.load_run(str(fold_dir))
  assert joined.aus == (1, 12) and joined.model.num_aus == 2
  np.testing.assert_allclose(joined.thresholds, [0.3, 0.6])
  assert joined.median_windows.tolist() == [1, 3]
  faces = list(np.random.default_rng(0).integers(
      0, 256, size=(4, 64, 64, 3), dtype=np.uint8))
  batch = predict_run.prepare_model_input(faces, joined.config)
  logits = np.asarray(joined.apply_fn(joined.variables, batch)[0])
  assert logits.shape == (4, 2)
  for column, au in enumerate(base.aus):
    alone = predict_run.load_run(str(fold_dir / f'au_{au:02d}'))
    np.testing.assert_allclose(
        logits[:, column],
        np.asarray(alone.apply_fn(alone.variables, batch)[0])[:, 0],
        rtol=1e-5, atol=1e-6)
  # Heads trained on different encoders cannot be joined: named.
  other = tmp_path / 'fold_2'
  for au in base.aus:  # Each with its own random encoder.
    config = runs.run_config(base, runs.RunKey(2, au=au))
    _save_run(str(other / f'au_{au:02d}'), config, states[au])
  with pytest.raises(ValueError, match=r'fold_2: join_heads: tree 1 encoder'):
    predict_run.load_run(str(other))
  # Per-AU runs of a model without join_heads: pick one AU run.
  drml_dir = tmp_path / 'fold_3' / 'au_01'
  drml_dir.mkdir(parents=True)
  checkpointing.write_config(drml_config.get_config('test'), str(drml_dir))
  with pytest.raises(ValueError, match=r"model\(s\) \['drml'\].*\['au_01'\]"):
    predict_run.load_run(str(tmp_path / 'fold_3'))


def test_f1_at_best_threshold_by_hand():
  """AU 0: scores .9 .8 .7 .6 with labels 1 0 1 0: cutting at .7 gives
  tp 2, fp 1, fn 0 -> F1 0.8 (at .9: 2/3; at .6: 2/3). AU 1: tied scores
  .5 .5 (1, 0) and .2 (1), one unknown frame: at .5 tp 1 fp 1 fn 1 -> 0.5,
  at .2 tp 2 fp 1 -> 0.8. AU 2 has no positive: 0."""
  labels = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 0], [0, -1, 0]])
  scores = np.array([[.9, .5, .9], [.8, .5, .1], [.7, .2, .3], [.6, .99, .2]])
  np.testing.assert_allclose(
      caud_method.f1_at_best_threshold(labels, scores), [0.8, 0.8, 0.0])
