"""The `:paper` starting points of AUNets, checked on weights.

Each source run is a tiny model saved as a finished weights-only run where
the dependent `:paper` config's own `init_from` (unchanged, only the widths
shrunk) looks for it; `init_from.load_init_from` must then hand the
dependent run exactly the source's tensors:
  * the RGB AUNet of an AU <- that AU's HydraNet (configs/caud.py:paper);
  * a pi fusion <- the RGB AUNet of its AU and fold (its frozen RGB stream
    is that network's, not EmoNet's);
  * FERA 2017: the frontal view <- the BP4D AUNet, every other view <- the
    frontal one.
"""

import os
import re

import jax
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax import init_from
from au_jax import models
from au_jax import optim
from au_jax import runs
from au_jax import train
from configs import aunets as aunets_config
from configs import caud as caud_config

jax.config.update('jax_disable_most_optimizations', True)

AU = 12


def _tiny(config):
  """Shapes only: the start fields (init_from, one_model_per) untouched."""
  config.model.width_multiplier = 1 / 16
  config.resize_size = 36
  config.crop_size = 32
  return config


def _random_params(config, seed):
  shapes = jax.eval_shape(
      lambda b: models.create(config).init(jax.random.key(0), b, train=False),
      train.example_batch(config))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def _zeros_like(params):
  return jax.tree.map(lambda x: np.zeros(np.shape(x), np.float32), params)


def _save(config, workdir, key, params):
  directory = runs.run_dir(config, workdir, key)
  checkpointing.save_weights_only(directory, {'params': params}, 3, {}, 3)
  checkpointing.write_config(config, directory)
  return directory


def _load(config, workdir):
  """(params the run starts from, report) for a fresh run of `config`."""
  fresh = _zeros_like(_random_params(config, 0))
  loaded, report = init_from.load_init_from(config, workdir,
                                            {'params': fresh})
  return loaded['params'], report


def _assert_same(got, want):
  jax.tree.map(np.testing.assert_array_equal, got, want)


def _hydranet_and_rgb(workdir):
  """Saves the AU's HydraNet (caud:paper) and returns (its params, the RGB
  AUNet run config and the params that run starts from)."""
  caud = _tiny(caud_config.get_config('paper'))
  key = runs.RunKey(1, None, AU)
  caud_run = runs.run_config(caud, key)
  hydranet = _random_params(caud_run, seed=1)
  _save(caud_run, workdir, key, hydranet)
  rgb_run = runs.run_config(_tiny(aunets_config.get_config('paper')), key)
  start, report = _load(rgb_run, workdir)
  assert report['source'] == runs.run_dir(caud, workdir, key)
  return hydranet, rgb_run, start


def test_rgb_aunet_starts_from_its_aus_hydranet(tmp_path):
  workdir = str(tmp_path)
  hydranet, rgb_run, start = _hydranet_and_rgb(workdir)
  assert set(hydranet) == {'encoder', 'head_0'}
  assert set(start) == {'encoder', 'fc6', 'fc7', 'output'}
  _assert_same(start['encoder'], hydranet['encoder'])
  for layer in ('fc6', 'fc7', 'output'):  # The AU's head, 2-way output too.
    _assert_same(start[layer], hydranet['head_0'][layer])
  # Every layer trains (sec. 3.2.2: all layers unfrozen).
  assert rgb_run.frozen == ''
  # Another AU's HydraNet is another run: AU 1 finds none.
  other = runs.run_config(rgb_run, runs.RunKey(1, None, 1))
  with pytest.raises(FileNotFoundError, match='configs/caud.py:paper'):
    _load(other, workdir)


def test_pi_fusion_starts_from_the_rgb_aunet(tmp_path):
  workdir = str(tmp_path)
  key = runs.RunKey(1, None, AU)
  _, rgb_run, _ = _hydranet_and_rgb(workdir)
  rgb = _random_params(rgb_run, seed=2)  # The trained RGB AUNet.
  rgb_dir = _save(rgb_run, workdir, key, rgb)
  pi_run = runs.run_config(
      _tiny(aunets_config.get_config('paper-pi_fc6')), key)
  # A fusion run lives one level below the RGB runs (configs/aunets.py).
  start, report = _load(pi_run, os.path.join(workdir, 'pi_fc6'))
  assert report['source'] == rgb_dir
  # RGB stream and its copy in the motion stream: the RGB AUNet's.
  for layer in ('encoder', 'fc6'):
    _assert_same(start[layer], rgb[layer])
    _assert_same(start['motion_' + layer], rgb[layer])
  # fc7 takes [rgb fc6, motion fc6]: its rows are the RGB fc7's, twice.
  np.testing.assert_array_equal(
      start['fc7']['kernel'],
      np.concatenate([rgb['fc7']['kernel']] * 2, axis=0))
  np.testing.assert_array_equal(start['fc7']['bias'], rgb['fc7']['bias'])
  _assert_same(start['output'], rgb['output'])
  # What stays frozen is exactly that RGB stream (table 3).
  frozen = re.compile(pi_run.frozen)
  names = optim.flat_params(start)
  assert sorted({n.split('/')[0] for n in names if frozen.search(n)}) == [
      'encoder', 'fc6']


def test_fera17_frontal_from_bp4d_and_other_views_from_frontal(tmp_path):
  workdir = str(tmp_path / 'horizontal')  # fera17's default fusion.
  fera = _tiny(aunets_config.get_config('fera17'))
  assert fera.model.fusion == 'horizontal' and fera.flow
  bp4d_key = runs.RunKey(1, None, AU)
  bp4d_run = runs.run_config(
      _tiny(aunets_config.get_config('paper-horizontal')), bp4d_key)
  bp4d = _random_params(bp4d_run, seed=3)
  bp4d_dir = _save(bp4d_run, workdir, bp4d_key, bp4d)
  assert 'bp4d-crop' in bp4d_dir

  frontal_key = runs.RunKey(1, 5, AU)
  frontal_run = runs.run_config(fera, frontal_key)
  start, report = _load(frontal_run, workdir)
  assert report['source'] == bp4d_dir
  _assert_same(start, bp4d)

  frontal = _random_params(frontal_run, seed=4)  # The trained frontal.
  frontal_dir = _save(frontal_run, workdir, frontal_key, frontal)
  assert 'fera2017-crop' in frontal_dir
  for view in (1, 9):
    side_run = runs.run_config(fera, runs.RunKey(1, view, AU))
    start, report = _load(side_run, workdir)
    assert report['source'] == frontal_dir
    _assert_same(start, frontal)
    assert not report['not_in_source']
