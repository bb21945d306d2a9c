"""Training faults caught before work starts, or recovered with a count:
damaged record files of any subject, an unwritable run directory, metric
rows of steps redone after a kill, a damaged newest checkpoint that is
also the best."""

import glob
import json
import os
import re
import shutil

from array_record.python import array_record_module
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax import metric_writers
from au_jax import prepare
from au_jax import runs
from au_jax import train
from au_jax.data import input_pipeline
from au_jax.data import records
from test_faults_training import drml_test_config  # pylint: disable=g-bad-import-order



def _data_copy(tiny_data_dir, tmp_path):
  """A private copy of the tiny dataset (the shared one is never damaged)
  and its builder."""
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(tiny_data_dir, data_dir)
  return data_dir, prepare.get_builder('synthetic_au', 'tiny', data_dir)


def _damage(path, kind):
  if kind == 'truncated':
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  elif kind == 'overwritten':
    with open(path, 'r+b') as f:
      f.write(b'\xff' * 100)
  else:
    os.remove(path)


def _record_file(builder, subject):
  (path,) = builder.info.splits[subject].filepaths
  return os.fspath(path)


@pytest.mark.parametrize('kind', ['truncated', 'overwritten', 'missing'])
def test_damaged_middle_record_file_is_named_with_its_rebuild_command(
    tiny_data_dir, tmp_path, kind):
  data_dir, builder = _data_copy(tiny_data_dir, tmp_path)
  config = drml_test_config(data_dir)
  subjects = input_pipeline.fold_data(config, builder, 1).subjects
  # The first training subject: neither the first split read last (which
  # the data source's end-of-data read catches) nor the only one.
  read = subjects.train + subjects.validation + subjects.test
  damaged = subjects.train[0]
  assert len(subjects.train) > 1 and damaged != read[-1]
  records.check_record_files(builder, read)  # The intact copy passes.
  path = _record_file(builder, damaged)
  _damage(path, kind)

  with pytest.raises(records.DamagedDatasetError) as raised:
    records.check_record_files(builder, read)
  message = str(raised.value)
  assert f'subject {damaged}: {path} (' in message
  assert message.count('subject S') == 1  # Only the damaged one is named.
  command = re.search(
      r'python -m au_jax\.prepare (\S+) --config=(\S+) --data_dir=(\S+) '
      r'--force$', message)
  assert command.groups() == ('synthetic_au', 'tiny', data_dir)
  # The named command rebuilds the dataset in place: the files read again.
  prepare.prepare(command[1], command[2], command[3], force=True)
  records.check_record_files(
      prepare.get_builder('synthetic_au', 'tiny', data_dir), read)
  # The shared dataset was never touched.
  records.check_record_files(
      prepare.get_builder('synthetic_au', 'tiny', tiny_data_dir), read)


def test_record_count_differing_from_dataset_info_is_named(tiny_data_dir,
                                                           tmp_path):
  _, builder = _data_copy(tiny_data_dir, tmp_path)
  # A well-formed file of another length in S03's place (a file of another
  # build copied over it): only its first 5 records.
  path = _record_file(builder, 'S03')
  reader = array_record_module.ArrayRecordReader(path)
  first = reader.read(list(range(5)))
  reader.close()
  writer = array_record_module.ArrayRecordWriter(path, 'group_size:1')
  for record in first:
    writer.write(record)
  writer.close()
  with pytest.raises(records.DamagedDatasetError,
                     match=r'subject S03: .*holds 5 records where '
                     r'dataset_info\.json lists 16'):
    records.check_record_files(builder, ['S01', 'S03'])


def test_unknown_subject_is_named(tiny_data_dir):
  builder = prepare.get_builder('synthetic_au', 'tiny', tiny_data_dir)
  with pytest.raises(records.DamagedDatasetError,
                     match='subject S99: no such split'):
    records.check_record_files(builder, ['S01', 'S99'])


def test_writable_run_directory_is_created_and_left_clean(tmp_path):
  directory = str(tmp_path / 'work' / 'run')
  checkpointing.check_writable(directory)
  assert os.listdir(directory) == []
  os.makedirs(f'{directory}/checkpoints')
  checkpointing.check_writable(directory)
  assert os.listdir(f'{directory}/checkpoints') == []


def test_file_in_place_of_a_run_folder_is_named(tmp_path):
  (tmp_path / 'work').write_text('not a folder')
  with pytest.raises(checkpointing.NotWritableError,
                     match=re.escape(f'{tmp_path}/work/run cannot be '
                                     'written (Not a directory')):
    checkpointing.check_writable(str(tmp_path / 'work' / 'run'))
  directory = tmp_path / 'run'
  directory.mkdir()
  (directory / 'checkpoints').write_text('')
  with pytest.raises(checkpointing.NotWritableError,
                     match=f'{directory}/checkpoints cannot be written: it '
                     'is a file'):
    checkpointing.check_writable(str(directory))


@pytest.mark.skipif(os.geteuid() == 0,
                    reason='root writes into read-only folders')
def test_read_only_checkpoints_folder_is_named(tmp_path):
  checkpoints = tmp_path / 'run' / 'checkpoints'
  checkpoints.mkdir(parents=True)
  checkpoints.chmod(0o500)
  try:
    with pytest.raises(checkpointing.NotWritableError,
                       match=f'{checkpoints} cannot be written '
                       r'\(Permission denied'):
      checkpointing.check_writable(str(tmp_path / 'run'))
  finally:
    checkpoints.chmod(0o700)


def _rows(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _write_steps(writer, steps):
  for step in steps:
    writer.write_scalars(step, {'train_loss': 1.0 / step})
    if step % 2 == 0:
      writer.write_scalars(step, {'val_best': float(step)})


def test_resumed_metric_writer_holds_each_step_once(tmp_path, caplog):
  directory = str(tmp_path)
  with metric_writers.MetricWriter(directory, start_step=0) as writer:
    _write_steps(writer, range(1, 7))
  path = f'{directory}/metrics.jsonl'
  with open(path, 'a') as f:
    f.write('{"step": 7, "train_lo')  # Killed mid-write.
  # Killed after step 6's rows; the newest checkpoint is step 4.
  with metric_writers.MetricWriter(directory, start_step=4) as writer:
    _write_steps(writer, range(5, 7))
  (warning,) = [r.getMessage() for r in caplog.records
                if 'dropped' in r.getMessage()]
  assert 'dropped 3 row(s) of steps after 4' in warning
  assert '1 unreadable line(s); 6 rows kept' in warning
  with metric_writers.MetricWriter(str(tmp_path / 'uninterrupted')) as writer:
    _write_steps(writer, range(1, 7))
  assert _rows(path) == _rows(tmp_path / 'uninterrupted' / 'metrics.jsonl')
  assert not glob.glob(f'{directory}/.metrics.*')  # No temporary left.


def test_row_written_again_at_the_resume_step_replaces_the_earlier(
    tmp_path):
  # A finished run (4 steps) run again: nothing is trained, it is tested
  # again and writes its test row at step 4 once more.
  with metric_writers.MetricWriter(str(tmp_path), start_step=0) as writer:
    _write_steps(writer, range(1, 5))
    writer.write_scalars(4, {'test_f1': 0.25})
  with metric_writers.MetricWriter(str(tmp_path), start_step=4) as writer:
    writer.write_scalars(4, {'test_f1': 0.5})
  rows = _rows(tmp_path / 'metrics.jsonl')
  assert [r for r in rows if 'test_f1' in r] == [{'step': 4, 'test_f1': 0.5}]
  assert [r['step'] for r in rows if 'train_loss' in r] == [1, 2, 3, 4]
  assert [r['step'] for r in rows if 'val_best' in r] == [2, 4]


def test_metric_rows_are_kept_when_nothing_is_redone(tmp_path, caplog):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 2, "train_loss": 0.5}\n')
  inode = os.stat(path).st_ino
  metric_writers.MetricWriter(str(tmp_path), start_step=2).close()
  metric_writers.MetricWriter(str(tmp_path)).close()  # None: keep all.
  assert os.stat(path).st_ino == inode  # Not rewritten.
  assert _rows(path) == [{'step': 2, 'train_loss': 0.5}]
  assert 'dropped' not in caplog.text


def test_failed_metric_rewrite_leaves_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / 'metrics.jsonl'
  text = '{"step": 2, "a": 1.0}\n{"step": 4, "a": 2.0}\n'
  path.write_text(text)

  def fail(*unused_args):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(os, 'replace', fail)
  with pytest.raises(OSError, match='No space left'):
    metric_writers.drop_rows_after(str(path), 2)
  assert path.read_text() == text
  assert os.listdir(tmp_path) == ['metrics.jsonl']


def _save_steps(directory, best_by_step):
  manager = checkpointing.create_manager(directory)
  for step, best in best_by_step.items():
    checkpointing.save(manager, step, {'params': {'w': np.full(3, step)}},
                       {}, {'hash': 'a'}, {checkpointing.BEST_METRIC: best})
  return manager


def _listing(directory):
  return sorted(int(name) for name in os.listdir(f'{directory}/checkpoints')
                if name.isdigit())


def test_newest_two_steps_and_the_best_are_kept(tmp_path):
  manager = _save_steps(str(tmp_path),
                        {2: 0.9, 4: 0.1, 6: 0.2, 8: 0.3, 10: 0.4})
  manager.close()
  assert _listing(tmp_path) == [2, 8, 10]


def test_damaged_newest_step_that_is_best_falls_back_with_one_warning(
    tmp_path, caplog):
  manager = _save_steps(str(tmp_path), {2: 0.1, 4: 0.2, 6: 0.3})
  assert manager.best_step() == 6
  assert _listing(tmp_path) == [4, 6]
  for path in glob.glob(f'{tmp_path}/checkpoints/6/**/*', recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'\0garbage')
  state, _, step = checkpointing.restore(
      manager, {'params': {'w': np.zeros(3)}}, {'hash': 'a'})
  assert step == 4
  np.testing.assert_array_equal(state['params']['w'], np.full(3, 4.0))
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING' and 'damaged' in r.getMessage()]
  assert len(warnings) == 1
  assert 'checkpoints/6 is damaged' in warnings[0]
  assert 'restored step 4' in warnings[0]
  # Step 6 is moved aside, so the resumed run can save step 6 again.
  assert manager.all_steps() == [4]
  assert os.listdir(tmp_path / checkpointing.DAMAGED_DIR) == ['6']
  checkpointing.save(manager, 6, {'params': {'w': np.ones(3)}}, {},
                     {'hash': 'a'}, {checkpointing.BEST_METRIC: 0.5})
  assert manager.all_steps() == [4, 6]
  manager.close()


def test_every_step_damaged_names_the_run_and_how_to_start_over(tmp_path):
  manager = _save_steps(str(tmp_path), {2: 0.1, 4: 0.2})
  for path in glob.glob(f'{tmp_path}/checkpoints/*/**/*', recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'\0garbage')
  with pytest.raises(RuntimeError,
                     match=r'No intact checkpoint in .*checkpoints/4 is '
                     r'damaged.*checkpoints/2 is damaged.*Start over by '
                     f'deleting {tmp_path} '):
    checkpointing.restore(manager, {'params': {'w': np.zeros(3)}},
                          {'hash': 'a'})
  assert _listing(tmp_path) == [2, 4]  # Nothing moved: the user decides.
  manager.close()


# End to end through the trainer.


def test_trainer_refuses_a_damaged_middle_record_file_before_training(
    tiny_data_dir, tmp_path):
  data_dir, builder = _data_copy(tiny_data_dir, tmp_path)
  config = drml_test_config(data_dir)
  subject = input_pipeline.fold_data(config, builder, 1).subjects.train[0]
  _damage(_record_file(builder, subject), 'truncated')
  with pytest.raises(records.DamagedDatasetError,
                     match=f'(?s)subject {subject}: .*au_jax.prepare'):
    train.train_fold(config, str(tmp_path / 'work'), fold=1)
  directory = runs.run_dir(config, str(tmp_path / 'work'), 1)
  assert not os.path.exists(f'{directory}/checkpoints')
  assert not os.path.exists(f'{directory}/metrics.jsonl')


def test_trainer_refuses_an_unwritable_run_directory_before_training(
    tiny_data_dir, tmp_path):
  config = drml_test_config(tiny_data_dir)
  directory = runs.run_dir(config, str(tmp_path), 1)
  os.makedirs(directory)
  with open(f'{directory}/checkpoints', 'w') as f:
    f.write('in the way')
  with pytest.raises(checkpointing.NotWritableError,
                     match=f'{directory}/checkpoints cannot be written'):
    train.train_fold(config, str(tmp_path), fold=1)
  assert not os.path.exists(f'{directory}/metrics.jsonl')


def test_trainer_resumed_after_a_kill_logs_each_step_once(tiny_data_dir,
                                                          tmp_path):
  config = drml_test_config(tiny_data_dir, log_every_steps=1)
  train.train_fold(config, str(tmp_path), fold=1)
  directory = runs.run_dir(config, str(tmp_path), 1)
  # What kill -9 after step 4's rows, before its checkpoint was renamed
  # into place, leaves: rows of steps 1-4, checkpoints of step 2 only.
  shutil.rmtree(f'{directory}/checkpoints/4')
  train.train_fold(config, str(tmp_path), fold=1)
  rows = [(row['step'], tuple(sorted(row)))
          for row in _rows(f'{directory}/metrics.jsonl')]
  assert len(rows) == len(set(rows))
  assert sorted({step for step, _ in rows}) == [1, 2, 3, 4]
