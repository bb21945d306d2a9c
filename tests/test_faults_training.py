"""Training faults: damaged checkpoints, divergence, bad settings, a second
writer on a run directory (more in test_faults_more.py)."""

import glob
import os

import pytest

from au_jax import checkpointing
from au_jax import runs
from au_jax import train
from configs import drml
from au_jax import runlock
import numpy as np
import shutil
from au_jax.data import input_pipeline
from au_jax.data import records
import jax


def drml_test_config(data_dir, **overrides):
  """drml:test on `data_dir`, fold 1, no validation subjects."""
  config = drml.get_config('test')
  config.data_dir = data_dir
  config.folds = '1'
  config.num_validation_subjects = 0
  for key, value in overrides.items():
    config[key] = value
  return config


def _steps(directory):
  return sorted(int(os.path.basename(p)) for p in
                glob.glob(f'{directory}/checkpoints/[0-9]*'))


def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact(
    tiny_data_dir, tmp_path, caplog):
  config = drml_test_config(tiny_data_dir)
  train.train_fold(config, str(tmp_path), fold=1)
  directory = runs.run_dir(config, str(tmp_path), 1)
  # Checkpoints every 2 of 4 steps: the newest two are both kept.
  assert _steps(directory) == [2, 4]
  for path in glob.glob(f'{directory}/checkpoints/4/state/**/*',
                        recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'\0garbage')
  config.num_train_steps = 6
  train.train_fold(config, str(tmp_path), fold=1)
  # One warning names the damaged step and the step resumed from; steps 3
  # and 4 are trained again and step 4 saved anew beside the kept copy.
  warnings = [r.getMessage() for r in caplog.records
              if 'is damaged' in r.getMessage()]
  assert len(warnings) == 1
  assert 'checkpoints/4 is damaged' in warnings[0]
  assert 'restored step 2' in warnings[0]
  assert _steps(directory) == [4, 6]
  assert os.listdir(f'{directory}/{checkpointing.DAMAGED_DIR}') == ['4']
  state, step = checkpointing.restore_raw(directory)
  assert step == 6
  assert all(np.isfinite(np.asarray(x)).all()
             for x in jax.tree_util.tree_leaves(state['params']))


def test_divergence_stops_naming_the_step_and_writes_no_results(
    tiny_data_dir, tmp_path):
  config = drml_test_config(tiny_data_dir, learning_rate=1e30,
                            num_train_steps=6, log_every_steps=1,
                            checkpoint_every_steps=1)
  with pytest.raises(checkpointing.NonFiniteError,
                     match=r'(diverged at step \d+: \w+|is not finite)'):
    train.train_fold(config, str(tmp_path), fold=1)
  directory = runs.run_dir(config, str(tmp_path), 1)
  assert not os.path.exists(f'{directory}/test_results.json')
  # Whatever was checkpointed is finite (a later run resumes from it).
  if glob.glob(f'{directory}/checkpoints/[0-9]*'):
    state, _ = checkpointing.restore_raw(directory)
    assert all(np.isfinite(np.asarray(x)).all()
               for x in jax.tree_util.tree_leaves(state['params']))


@pytest.mark.parametrize('field,value', [('eval_every_steps', 0),
                                         ('num_train_steps', 0)])
def test_bad_cadence_or_steps_refused_before_any_work(field, value, tmp_path):
  config = drml_test_config(str(tmp_path / 'no_data_here'))
  config[field] = value
  with pytest.raises(ValueError, match=f'config.{field}=0'):
    train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert not os.path.exists(tmp_path / 'work')
  assert not os.path.exists(tmp_path / 'no_data_here')


def test_second_writer_on_a_run_directory_is_refused(tiny_data_dir,
                                                     tmp_path):
  config = drml_test_config(tiny_data_dir)
  directory = runs.run_dir(config, str(tmp_path), 1)
  os.makedirs(directory)
  with runlock.RunLock(directory):
    with pytest.raises(Exception, match=str(os.getpid())):
      train.train_fold(config, str(tmp_path), fold=1)


def test_restore_skips_a_damaged_step_for_the_newest_intact(tmp_path,
                                                            caplog):
  manager = checkpointing.create_manager(str(tmp_path))
  meta = {'hash': 'abc'}
  state = {'params': {'w': np.arange(3.0)}}
  # Step 2 kept as best, step 4 as latest.
  checkpointing.save(manager, 2, state, {}, meta,
                     {checkpointing.BEST_METRIC: 10.0})
  checkpointing.save(manager, 4, {'params': {'w': np.ones(3)}}, {}, meta,
                     {checkpointing.BEST_METRIC: 5.0})
  assert manager.all_steps() == [2, 4]
  for path in glob.glob(f'{tmp_path}/checkpoints/4/state/**/*',
                        recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'\0garbage')
  restored, _, step = checkpointing.restore(manager, state, meta)
  assert step == 2
  np.testing.assert_array_equal(restored['params']['w'], np.arange(3.0))
  assert 'checkpoints/4 is damaged' in caplog.text
  with pytest.raises(checkpointing.NonFiniteError, match='params w'):
    checkpointing.save(manager, 6, {'params': {'w': np.full(3, np.nan)}},
                       {}, meta)


def test_truncated_array_record_file_is_named(tiny_data_dir, tmp_path):
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(tiny_data_dir, data_dir)
  # A copy whose every record file lost its second half (a truncated copy),
  # opened afresh: the first training subject is named.
  paths = sorted(
      glob.glob(f'{data_dir}/synthetic_au/tiny/1.0.0/*.array_record*'))
  for path in paths:
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  config = drml_test_config(data_dir)
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, 1)
  subject = data.subjects.train[0]
  with pytest.raises(records.DamagedDatasetError,
                     match=f'subject {subject} .*damaged.*au_jax.prepare'):
    input_pipeline.split_source(data, 'train')
  path = paths[0]
  # The original data dir is untouched.
  assert os.path.getsize(path) < os.path.getsize(
      path.replace(data_dir, tiny_data_dir))


def test_checkpoint_write_killed_midway_is_ignored(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  state = {'params': {'w': np.arange(3.0)}}
  checkpointing.save(manager, 2, state, {}, {'hash': 'a'})
  manager.close()
  # What a process killed while orbax writes step 4 leaves: a temporary
  # folder that is only renamed to '4' when complete.
  partial = tmp_path / 'checkpoints' / '4.orbax-checkpoint-tmp-1234' / 'state'
  partial.mkdir(parents=True)
  (partial / 'half_written').write_bytes(b'\0' * 10)
  manager = checkpointing.create_manager(str(tmp_path))
  assert manager.all_steps() == [2]
  restored, _, step = checkpointing.restore(manager, state, {'hash': 'a'})
  assert step == 2
  np.testing.assert_array_equal(restored['params']['w'], np.arange(3.0))
