"""End-to-end: the DRML spine on synthetic_au/tiny, resumption, bad input."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax import train
from configs import drml


def _config(data_dir, **overrides):
  config = drml.get_config('test')
  config.data_dir = data_dir
  config.folds = '1'
  for key, value in overrides.items():
    config[key] = value
  return config


def _final_params(config, workdir, fold=1):
  state, step = checkpointing.restore_raw(
      checkpointing.run_dir(config, workdir, fold))
  return state['params'], step


def test_train_and_evaluate_writes_tables(tiny_data_dir, tmp_path):
  config = _config(tiny_data_dir)
  table = train.train_and_evaluate(config, str(tmp_path))
  method_dir = tmp_path / 'synthetic_au-tiny' / 'drml'
  for name in ('results.json', 'results.md', 'per_au_f1.png',
               'fold_1/test_results.json', 'fold_1/metrics.jsonl'):
    assert (method_dir / name).exists(), name
  results = json.loads((method_dir / 'results.json').read_text())
  f1 = np.array([results['per_au'][str(au)]['f1'] for au in config.aus]
                if isinstance(results['per_au'], dict) else [])
  assert f1.size == len(config.aus)
  assert np.all((0 <= f1) & (f1 <= 100))
  lines = (method_dir / 'fold_1/metrics.jsonl').read_text().splitlines()
  steps = [json.loads(l)['step'] for l in lines]
  assert max(steps) == config.num_train_steps
  assert any('val_mean_f1' in json.loads(l) for l in lines)
  assert table is not None


def test_killed_run_resumes_where_it_stopped(tiny_data_dir, tmp_path):
  # Uninterrupted: 4 steps.
  config = _config(tiny_data_dir, num_validation_subjects=0)
  train.train_fold(config, str(tmp_path / 'whole'), fold=1)
  whole, step = _final_params(config, str(tmp_path / 'whole'))
  assert step == 4
  # "Killed" after the step-2 checkpoint, then restarted to step 4: the
  # restart must restore the parameters, optimiser state and the data
  # iterator position, or the parameters differ.
  config_short = _config(tiny_data_dir, num_validation_subjects=0,
                         num_train_steps=2)
  train.train_fold(config_short, str(tmp_path / 'split'), fold=1)
  train.train_fold(config, str(tmp_path / 'split'), fold=1)
  resumed, step = _final_params(config, str(tmp_path / 'split'))
  assert step == 4
  for a, b in zip(jax.tree_util.tree_leaves(whole),
                  jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_restart_without_data_state_differs(tiny_data_dir, tmp_path):
  """The resumption test above can fail: skipping the data state shows it."""
  config = _config(tiny_data_dir, num_validation_subjects=0)
  train.train_fold(config, str(tmp_path / 'whole'), fold=1)
  whole, _ = _final_params(config, str(tmp_path / 'whole'))
  short = _config(tiny_data_dir, num_validation_subjects=0, num_train_steps=2)
  train.train_fold(short, str(tmp_path / 'split'), fold=1)
  original = checkpointing.restore
  def restore_without_data(*args, **kwargs):
    out = original(*args, **kwargs)
    return None if out is None else (out[0], {}, out[2])
  checkpointing.restore = restore_without_data
  try:
    train.train_fold(config, str(tmp_path / 'split'), fold=1)
  finally:
    checkpointing.restore = original
  resumed, _ = _final_params(config, str(tmp_path / 'split'))
  assert any(not np.allclose(a, b, atol=1e-6) for a, b in zip(
      jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed)))


def test_checkpoint_from_other_config_is_refused(tiny_data_dir, tmp_path):
  config = _config(tiny_data_dir, num_validation_subjects=0,
                   num_train_steps=2)
  train.train_fold(config, str(tmp_path), fold=1)
  other = _config(tiny_data_dir, num_validation_subjects=0, num_train_steps=2)
  other.aus = (1, 2, 4)
  with pytest.raises(ValueError, match='different config.*aus'):
    train.train_fold(other, str(tmp_path), fold=1)


@pytest.mark.parametrize('field,value,message', [
    ('aus', (1, 3), 'unknown AU id 3'),
    ('aus', (1, 5), 'AU 5 is not labelled'),
    ('folds', '1,4', '4'),
    ('batch_size', 0, 'batch_size'),
])
def test_bad_config_values_are_named(field, value, message):
  config = drml.get_config('test')
  config[field] = value
  with pytest.raises(ValueError, match=message):
    train.check_config(config)


def test_unknown_config_field_is_an_error():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
      [sys.executable, '-m', 'au_jax.main', '--config=configs/drml.py:test',
       '--config.not_a_field=1', '--workdir=/nonexistent'],
      cwd=root, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=root))
  assert out.returncode != 0
  assert "unknown config field 'not_a_field'" in out.stderr
  assert 'Traceback' not in out.stderr


def test_dataset_that_needs_manual_files_is_named(tmp_path):
  config = drml.get_config('test')
  config.dataset = 'bp4d'
  config.dataset_config = None
  config.data_dir = str(tmp_path)
  config.folds = '1'
  with pytest.raises(ValueError, match='bp4d.*manual_dir'):
    train.train_and_evaluate(config, str(tmp_path / 'work'))
