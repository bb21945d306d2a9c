"""LP-Net: model shapes, L-Net recurrence, P-Net normalisation, loss terms,
selective learning and the 8-device equivalence of the loss."""

import json
import os
import re
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from au_jax import config_checks
from au_jax import losses
from au_jax import models
from au_jax import optim
from au_jax import runs
from au_jax import train
from au_jax.methods import lpnet as method
from au_jax.models import lpnet
from configs import lpnet as lpnet_config

import multidevice  # pylint: disable=g-import-not-at-top



def _config(selective_learning=True, target=0.5, weight=1.0):
  return ml_collections.ConfigDict(dict(
      selective_learning=selective_learning,
      selective_learning_target=target, orthogonality_weight=weight))


def _landmarks(batch: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  points = rng.uniform(10, 50, size=(batch, 68, 2)).astype(np.float32)
  points[:, 36:42] = [20.0, 25.0]  # Eyes apart, so the IPD is not tiny.
  points[:, 42:48] = [40.0, 25.0]
  return points


# ----------------------------------------------------------------- shapes


@pytest.mark.parametrize('size', [(224, 224), (96, 96), (64, 96), (32, 32)])
def test_shapes_follow_input_size(size):
  model = lpnet.Model(num_aus=12, width=8, lstm_features=16)
  batch = {'image': jnp.zeros((2,) + size + (3,)),
           'landmarks': jnp.zeros((2, 68, 2))}
  logits, aux = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), batch, False)[0])
  k = -(-size[0] // 32) * -(-size[1] // 32)  # k = (H/32)(W/32), rounded up
  assert logits.shape == (2, 12)
  assert aux['local_logits'].shape == (2, k, 12)
  assert aux['au_feature'].shape == (2, 64)
  assert aux['shape_feature'].shape == (2, 64)  # f_s sized like f_au
  assert aux['shape_terms'].shape == (2, 12)
  assert aux['shape_valid'].shape == (2,)


def test_ablation_switches_choose_the_heads():
  image = {'image': jnp.zeros((1, 64, 64, 3)),
           'landmarks': jnp.zeros((1, 68, 2))}

  def params(**switches):
    model = lpnet.Model(num_aus=3, depth=18, width=4, lstm_features=4,
                        **switches)
    return set(jax.eval_shape(
        lambda: model.init(jax.random.key(0), image, False))['params'])

  assert params(use_lnet=False, use_pnet=False) == {'stem', 'output'}
  assert params(use_lnet=True, use_pnet=False) == {'stem', 'lnet'}
  assert params(use_lnet=True, use_pnet=True) == {'stem', 'lnet', 'pnet'}
  assert params(use_lnet=False, use_pnet=True) == {'stem', 'output', 'pnet'}


def test_full_model_is_lnet_mean_plus_pnet_terms_and_absent_landmarks():
  model = lpnet.Model(num_aus=3, depth=18, width=4, lstm_features=4,
                      pnet_hidden=8)
  landmarks = _landmarks(3)
  landmarks[1] = -1.0  # No landmarks at all for example 1.
  landmarks[2, 36:42] = -1.0  # Example 2 lacks one eye.
  batch = {'image': jax.random.normal(jax.random.key(1), (3, 64, 64, 3)),
           'landmarks': jnp.asarray(landmarks)}
  variables = jax.jit(model.init, static_argnums=2)(
      jax.random.key(0), batch, False)

  # Absent landmarks give finite values and gradients (no 0/0).
  def total(params):
    out, out_aux = model.apply({**variables, 'params': params}, batch, False)
    return out.sum() + method.orthogonality_loss(
        out_aux['au_feature'], out_aux['shape_feature']).sum(), (out, out_aux)

  (_, (logits, aux)), grads = jax.jit(jax.value_and_grad(
      total, has_aux=True))(variables['params'])
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  assert np.all(np.isfinite(logits))
  # Eq. 4: mean over positions of the per-AU LSTM outputs, plus m_j.
  np.testing.assert_allclose(
      logits, aux['local_logits'].mean(axis=1) + aux['shape_terms'],
      rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(aux['shape_valid'], [1.0, 0.0, 0.0])
  np.testing.assert_array_equal(aux['shape_terms'][1:], 0.0)


# ------------------------------------------------------------------ L-Net


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_scan_equals_an_explicit_loop_over_positions():
  num_aus, hidden, k, dim = 3, 5, 6, 7
  lnet_module = lpnet.LNet(num_aus=num_aus, features=hidden)
  features = jax.random.normal(jax.random.key(2), (2, k, dim))
  variables = jax.jit(lnet_module.init)(jax.random.key(0), features)
  apply = jax.jit(lnet_module.apply)
  logits, per_position = apply(variables, features)
  p = jax.tree_util.tree_map(np.asarray, variables['params']['lstm'])
  x = np.asarray(features)
  expected = np.zeros((2, k, num_aus))
  for j in range(num_aus):  # AU j's LSTM, written out step by step.
    c = np.zeros((2, hidden))
    h = np.zeros((2, hidden))
    for i in range(k):
      gates = (x[:, i] @ p['input']['kernel'][j] + p['input']['bias'][j]
               + h @ p['step']['hidden']['kernel'][j])
      gi, gf, gg, go = np.split(gates, 4, axis=-1)
      c = _sigmoid(gf) * c + _sigmoid(gi) * np.tanh(gg)
      h = _sigmoid(go) * np.tanh(c)
      expected[:, i, j] = (h @ p['readout']['kernel'][j])[:, 0] + (
          p['readout']['bias'][j][0])
  np.testing.assert_allclose(per_position, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, expected.mean(axis=1), rtol=1e-5,
                             atol=1e-6)
  # The order of positions matters (a recurrence, not a pooled sum).
  reversed_logits, _ = apply(variables, features[:, ::-1])
  assert float(jnp.max(jnp.abs(reversed_logits - logits))) > 1e-4


def test_each_au_has_its_own_lstm_parameters():
  num_aus = 4
  lnet_module = lpnet.LNet(num_aus=num_aus, features=3)
  features = jax.random.normal(jax.random.key(3), (2, 5, 6))
  params = jax.jit(lnet_module.init)(jax.random.key(0), features)[
      'params']
  # Every parameter has a leading AU axis and the AUs start different.
  for leaf in jax.tree_util.tree_leaves(params):
    assert leaf.shape[0] == num_aus
  kernel = params['lstm']['input']['kernel']
  assert float(jnp.max(jnp.abs(kernel[0] - kernel[1]))) > 0
  # jacobian[j] = gradient of AU j's summed logit w.r.t. all parameters.
  jacobian = jax.jit(jax.jacrev(lambda q: lnet_module.apply(
      {'params': q}, features)[0].sum(axis=0)))(params)
  for j in range(num_aus):
    for leaf in jax.tree_util.tree_leaves(jacobian):
      others = np.delete(np.asarray(leaf[j]), j, axis=0)
      assert np.all(others == 0)  # AU j's loss touches only LSTM j...
    hidden = jacobian['lstm']['step']['hidden']['kernel'][j, j]
    assert float(jnp.max(jnp.abs(hidden))) > 0  # ...and does touch it.


# ------------------------------------------------------------------ P-Net


def test_landmark_normalisation_on_hand_computed_points():
  points = np.full((3, 68, 2), 5.0, np.float32)
  points[0, 36:42] = [10.0, 20.0]  # eye centre (10, 20)
  points[0, 42:48] = [30.0, 20.0]  # (30, 20): IPD 20, midpoint (20, 20)
  points[0, 0] = [40.0, 60.0]  # -> ((40-20)/20, (60-20)/20) = (1, 2)
  points[0, 1] = [-1.0, -1.0]  # absent -> 0
  points[0, 2] = [-1.0, 3.0]  # one coordinate -1 is a real position
  # Example 1: eyes of uneven point sets; absent points do not move centres.
  points[1, 36:42] = [[0.0, 0.0], [6.0, 0.0], [0.0, 8.0], [6.0, 8.0],
                      [-1.0, -1.0], [-1.0, -1.0]]  # centre (3, 4)
  points[1, 42:48] = [[9.0, 4.0]] * 5 + [[-1.0, -1.0]]  # centre (9, 4)
  # -> IPD 6, midpoint (6, 4).
  points[1, 10] = [12.0, 16.0]  # -> (1, 2)
  points[2] = -1.0  # nothing: invalid
  normalised, valid = jax.jit(lpnet.normalise_landmarks)(points)
  np.testing.assert_allclose(normalised[0, 0], [1.0, 2.0])
  np.testing.assert_array_equal(normalised[0, 1], [0.0, 0.0])
  np.testing.assert_allclose(normalised[0, 2], [-21.0 / 20, -17.0 / 20])
  np.testing.assert_allclose(normalised[0, 36], [-0.5, 0.0])
  np.testing.assert_allclose(normalised[1, 10], [1.0, 2.0])
  np.testing.assert_array_equal(normalised[1, 40], [0.0, 0.0])
  np.testing.assert_array_equal(valid, [1.0, 1.0, 0.0])
  np.testing.assert_array_equal(normalised[2], 0.0)
  # Coinciding eye centres (IPD 0) are invalid too, not a division by 0.
  same = np.full((1, 68, 2), 7.0, np.float32)
  normalised, valid = jax.jit(lpnet.normalise_landmarks)(same)
  assert float(valid[0]) == 0.0 and np.all(np.asarray(normalised) == 0)
  with pytest.raises(ValueError, match='68, 2'):
    lpnet.normalise_landmarks(jnp.zeros((1, 5, 2)))


# ------------------------------------------------------------------ losses


def test_orthogonality_loss_value():
  f_au = jnp.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]])
  f_s = jnp.array([[1.0, -2.0, -1.0], [0.0, 5.0, 0.0]])
  # |1 - 4 - 3| = 6; orthogonal vectors give 0.
  np.testing.assert_allclose(method.orthogonality_loss(f_au, f_s), [6.0, 0.0])


def test_selective_learning_weights_on_a_hand_made_batch():
  labels = jnp.array([[1, 1, 0, 1],
                      [0, 1, 0, 1],
                      [0, 0, 0, -1],
                      [0, -1, 0, -1]])
  weights = method.selective_learning_weights(labels, 0.5)
  expected = np.array([
      # AU0: 1 of 4 positive: 0.5/0.25 = 2, negatives 0.5/0.75 = 2/3.
      # AU1: 2 of 3 known positive: 0.75 and 1.5; unknown 0.
      # AU2: no positives -> cannot balance -> 1. AU3: no negatives -> 1.
      [2.0, 0.75, 1.0, 1.0],
      [2 / 3, 0.75, 1.0, 1.0],
      [2 / 3, 1.5, 1.0, 0.0],
      [2 / 3, 0.0, 1.0, 0.0]])
  np.testing.assert_allclose(weights, expected, rtol=1e-6)
  # Per AU the weights sum to the number of known labels.
  np.testing.assert_allclose(weights.sum(0), [4, 3, 4, 2], rtol=1e-6)
  # A target share of 0.25 for AU0 matches its batch: all weights 1.
  weights = method.selective_learning_weights(
      labels, jnp.array([0.25, 0.5, 0.5, 0.5]))
  np.testing.assert_allclose(weights[:, 0], 1.0, rtol=1e-6)


def test_loss_fn_values():
  labels = np.array([[1, 0, -1], [0, 0, 1], [0, 1, 1], [0, -1, 0]], np.int32)
  logits = jnp.array([[2.0, -1.0, 0.5], [0.3, 0.0, 1.0], [-0.5, 0.2, 0.0],
                      [1.0, 3.0, -2.0]])
  aux = {'au_feature': jnp.array([[1.0, 2.0]] * 4),
         'shape_feature': jnp.array([[1.0, 1.0], [2.0, 0.0], [9.0, 9.0],
                                     [0.0, -1.0]]),
         'shape_valid': jnp.array([1.0, 1.0, 0.0, 1.0])}
  batch = {'au_occurrence': labels}
  # Without selective learning: the masked cross-entropy of au_jax.losses,
  # /C (eq. 5) and /B; L_r over valid rows: (3 + 2 + 2) / 3.
  loss, scalars = method.loss_fn((logits, aux), batch, _config(False))
  ce = losses.sigmoid_cross_entropy(logits, labels, normalise='batch') / 3
  np.testing.assert_allclose(scalars['au_loss'], ce, rtol=1e-6)
  np.testing.assert_allclose(scalars['orthogonality_loss'], 7 / 3, rtol=1e-6)
  np.testing.assert_allclose(loss, ce + 7 / 3, rtol=1e-6)
  # With selective learning, written out with numpy.
  x = np.asarray(logits, np.float64)
  log_p, log_q = -np.log1p(np.exp(-x)), -np.log1p(np.exp(x))
  w = np.asarray(method.selective_learning_weights(labels, 0.5))
  terms = -(w * ((labels == 1) * log_p + (labels == 0) * log_q))
  expected = terms.sum() / (4 * 3)
  loss, scalars = method.loss_fn((logits, aux), batch, _config(True,
                                                               weight=0.5))
  np.testing.assert_allclose(scalars['au_loss'], expected, rtol=1e-6)
  np.testing.assert_allclose(loss, expected + 0.5 * 7 / 3, rtol=1e-6)
  # Padding rows (mask False) count as unknown and leave L_r.
  padded = dict(batch, mask=np.array([True, True, True, False]))
  _, scalars = method.loss_fn((logits, aux), padded, _config(False))
  np.testing.assert_allclose(scalars['orthogonality_loss'], 5 / 2, rtol=1e-6)
  # No P-Net (Stem-Net / + L-Net rows): L_r = 0.
  _, scalars = method.loss_fn((logits, {'au_feature': aux['au_feature']}),
                              batch, _config())
  assert float(scalars['orthogonality_loss']) == 0.0


# Fresh process: the host device count is fixed when JAX starts.
_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import ml_collections
    jax.config.update('jax_disable_most_optimizations', True)
    from au_jax import parallel
    from au_jax.methods import lpnet as method
    assert jax.local_device_count() == 8, jax.devices()

    config = ml_collections.ConfigDict(dict(
        selective_learning=True, selective_learning_target=0.5,
        orthogonality_weight=1.0))
    rng = np.random.default_rng(0)
    n, c, d = 16, 3, 5
    labels = rng.integers(-1, 2, size=(n, c)).astype(np.int32)
    labels[:8, 0] = 1  # Skewed per device: local SL weights would differ.
    labels[8:, 0] = 0
    batch = {'au_occurrence': labels,
             'mask': np.arange(n) != 5}  # one padding row
    inputs = (rng.normal(size=(n, c)).astype(np.float32),
              rng.normal(size=(n, d)).astype(np.float32),
              rng.normal(size=(n, d)).astype(np.float32),
              (np.arange(n) % 4 != 3).astype(np.float32))

    def loss(logits, f_au, f_s, valid, batch):
      aux = {'au_feature': f_au, 'shape_feature': f_s, 'shape_valid': valid}
      return method.loss_fn((logits, aux), batch, config)

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
    (one, s1), g1 = jax.jit(grad)(*inputs, batch)  # no pmap: one device

    def per_device(*args):
      (value, scalars), grads = grad(*args)
      return jax.lax.pmean(value, parallel.AXIS_NAME), scalars, grads

    shard = lambda x: x.reshape((8, -1) + x.shape[1:])
    eight, s8, g8 = jax.pmap(per_device, axis_name=parallel.AXIS_NAME)(
        *map(shard, inputs), jax.tree_util.tree_map(shard, batch))
    # The trainer averages per-device gradients: global = concat / D.
    worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b).reshape(
        a.shape) / 8))) for a, b in zip(g1, g8))
    size = max(float(np.max(np.abs(a))) for a in g1)
    print('RESULT', float(one), float(eight[0]), worst, size,
          float(s1['au_loss']), float(s8['au_loss'][3]),
          float(s1['orthogonality_loss']),
          float(s8['orthogonality_loss'][7]))
    """)


def test_eight_device_loss_and_gradient_equal_one_device():
  # Selective-learning counts and L_r's valid count are psum'd.
  loss1, loss8, worst, size, au1, au8, r1, r8 = map(
      float, multidevice.run_script(_SCRIPT))
  assert size > 1e-4  # The gradient is not trivially zero...
  assert worst < 1e-5 * max(1.0, size)  # ...and the same on 8 devices.
  np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
  np.testing.assert_allclose(au8, au1, rtol=1e-5)
  np.testing.assert_allclose(r8, r1, rtol=1e-5)


# ----------------------------------------------------------------- config


@pytest.mark.parametrize('variant', ['', 'paper', 'test'])
def test_config_stages_pass_on_their_stem_weights(variant):
  """Each stage's init_from regex covers parameters that exist, with the
  same shapes, in the stage it starts from; what it leaves out is the new
  head (and the pretraining classifier 'output' is never carried over)."""
  config = lpnet_config.get_config(variant)
  config_checks.check_config(config, 1)
  size = config.crop_size
  batch = {'image': jnp.zeros((1, size, size, 3)),
           'landmarks': jnp.zeros((1, 68, 2))}
  shapes = {}
  for key, run in runs.iter_runs(config):
    if key.fold != runs.plan(config)[0].fold:
      continue
    model = models.create(run)
    params = jax.eval_shape(
        lambda m=model: m.init(jax.random.key(0), batch, False))['params']
    shapes[key.stage] = {
        name: leaf.shape for name, leaf in zip(
            optim.parameter_names(params), jax.tree_util.tree_leaves(params))}
    if run.init_from is None:
      continue
    source = shapes[run.init_from.stage]
    carried = {n for n in shapes[key.stage]
               if re.fullmatch(run.init_from.params, n)}
    assert carried and all(shapes[key.stage][n] == source[n]
                           for n in carried)
    new = {n.split('/')[0] for n in set(shapes[key.stage]) - carried}
    assert new == {'stem': {'output'}, 'lnet': {'lnet'},
                   'pnet': {'pnet'}}[key.stage]
  assert list(shapes) == ['pretrain', 'stem', 'lnet', 'pnet']
  stem = sum(int(np.prod(s)) for n, s in shapes['stem'].items()
             if n.startswith('stem/'))
  if variant == 'paper':
    assert stem == 21_284_672  # ResNet-34 without the classifier


@pytest.mark.skipif(
    not os.environ.get('AU_JAX_SLOW_TESTS'),
    reason='4 staged runs, ~2.5 CPU-minutes: set AU_JAX_SLOW_TESTS=1')
def test_staged_run_on_tiny_data(tiny_data_dir, tmp_path):
  """pretrain -> stem -> lnet -> pnet, each starting from the one before."""
  config = lpnet_config.get_config('test')
  config.data_dir = tiny_data_dir
  train.train_and_evaluate(config, str(tmp_path))
  base = tmp_path / 'synthetic_au-tiny'
  sources = {'stem': 'classify/fold_1/stage_pretrain',
             'lnet': 'lpnet/fold_1/stage_stem',
             'pnet': 'lpnet/fold_1/stage_lnet'}
  for stage, source in sources.items():
    record = json.loads(
        (base / f'lpnet/fold_1/stage_{stage}/init_from.json').read_text())
    assert record['source'] == str(base / source)
    assert record['not_in_source'] == []
    loaded = record['loaded']
    assert any(n.startswith('params/stem/') for n in loaded)
    assert not any(n.startswith('params/output') for n in loaded)
    assert any(n.startswith('params/lnet/') for n in loaded) == (
        stage == 'pnet')
  assert (base / 'lpnet/results.json').exists()
