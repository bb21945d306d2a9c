"""RunLock: one writer per run directory, tested with real processes."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from au_jax import runlock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()

# Holds the lock on argv[1] until its stdin closes (or it is killed).
_HOLD = textwrap.dedent("""
    import sys
    from au_jax import runlock
    with runlock.RunLock(sys.argv[1]):
      print('locked', flush=True)
      sys.stdin.read()
""")

# Waits for argv[2] to exist, then tries the lock on argv[1] (reading a
# found lock slowly); holds it until argv[3] exists. Prints 'got', or exits 3
# with the error message.
_CONTEND = textwrap.dedent("""
    import os, sys, time
    from au_jax import runlock
    # Widen the window between reading a stale lock and replacing it, so a
    # missing guard would let two contenders both take it.
    read_owner = runlock.RunLock._owner
    def slow_owner(self):
      owner = read_owner(self)
      time.sleep(0.3)
      return owner
    runlock.RunLock._owner = slow_owner
    print('ready', flush=True)
    while not os.path.exists(sys.argv[2]):
      time.sleep(0.01)
    try:
      lock = runlock.RunLock(sys.argv[1]).__enter__()
    except runlock.RunLockedError as error:
      print(error, file=sys.stderr)
      sys.exit(3)
    print('got', flush=True)
    while not os.path.exists(sys.argv[3]):
      time.sleep(0.01)
    lock.__exit__(None, None, None)
""")


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.Popen([sys.executable, '-c', script, *args], cwd=ROOT,
                          env=env, text=True, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          **kwargs)


def _hold(directory: str) -> subprocess.Popen:
  process = _python(_HOLD, directory)
  assert process.stdout.readline().strip() == 'locked', process.stderr.read()
  return process


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, '-c', 'pass'])
  process.wait()
  return process.pid


def _write_lock(directory, **owner) -> str:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, runlock.LOCK_NAME)
  with open(path, 'w', encoding='utf-8') as file:
    json.dump(owner, file)
  return path


def test_second_process_is_refused_naming_the_owner(tmp_path):
  directory = str(tmp_path / 'run')
  holder = _hold(directory)
  lock_file = os.path.join(directory, runlock.LOCK_NAME)
  try:
    owner = runlock.holder(directory)
    assert (owner['pid'], owner['host']) == (holder.pid, HOST)
    # Another process ...
    contender = _python(
        'import sys\nfrom au_jax import runlock\n'
        'runlock.RunLock(sys.argv[1]).acquire()', directory)
    _, stderr = contender.communicate(timeout=60)
    assert contender.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith('au_jax.runlock.RunLockedError: Run directory '
                           f'{directory} is being trained by PID '
                           f'{holder.pid} on host {HOST} (since ')
    assert f'lock file {lock_file})' in last
    # ... and this one.
    with pytest.raises(runlock.RunLockedError, match=f'PID {holder.pid} '):
      with runlock.RunLock(directory):
        pass
    assert runlock.holder(directory)['pid'] == holder.pid  # Untouched.
  finally:
    holder.stdin.close()  # The holder leaves its `with` and exits.
    assert holder.wait(timeout=60) == 0
  assert not os.path.exists(lock_file)  # Removed on exit.
  with runlock.RunLock(directory):
    assert runlock.holder(directory)['pid'] == os.getpid()
  assert not os.path.exists(lock_file)


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
  directory = str(tmp_path / 'run')
  holder = _hold(directory)
  holder.send_signal(signal.SIGKILL)  # Cannot remove its lock.
  holder.wait(timeout=60)
  holder.stdin.close()
  assert runlock.holder(directory)['pid'] == holder.pid  # Left behind.
  with caplog.at_level(logging.WARNING):
    with runlock.RunLock(directory):
      owner = runlock.holder(directory)
      assert (owner['pid'], owner['host']) == (os.getpid(), HOST)
  assert (f'from PID {holder.pid} on host {HOST}: PID {holder.pid} on this '
          'host is no longer running') in caplog.text
  assert not os.path.exists(os.path.join(directory, runlock.LOCK_NAME))


def test_stale_lock_file_with_a_dead_pid(tmp_path, caplog):
  directory = str(tmp_path / 'run')
  pid = _dead_pid()
  _write_lock(directory, pid=pid, host=HOST, start_time='yesterday')
  with caplog.at_level(logging.WARNING):
    with runlock.RunLock(directory):
      assert runlock.holder(directory)['pid'] == os.getpid()
  assert f'PID {pid} on this host is no longer running' in caplog.text


def test_reused_pid_is_stale_but_the_live_owner_is_not(tmp_path, caplog):
  """A live PID that started at another time than the lock's owner is a
  reused PID: the owner is dead."""
  directory = str(tmp_path / 'run')
  # pylint: disable-next=protected-access
  start = runlock._process_start(os.getpid())
  assert start is not None  # Linux /proc.
  _write_lock(directory, pid=os.getpid(), host=HOST, process_start=start)
  with pytest.raises(runlock.RunLockedError, match=f'PID {os.getpid()} '):
    runlock.RunLock(directory).acquire()
  _write_lock(directory, pid=os.getpid(), host=HOST, process_start=start - 1)
  with caplog.at_level(logging.WARNING):
    with runlock.RunLock(directory):
      pass
  assert 'no longer running' in caplog.text


def test_other_host_is_refused_unless_forced(tmp_path, caplog):
  directory = str(tmp_path / 'run')
  lock_file = _write_lock(directory, pid=12345, host='node7.example',
                          start_time='2024-01-01T00:00:00+00:00')
  with pytest.raises(runlock.RunLockedError) as info:
    runlock.RunLock(directory).acquire()
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(
      f'Run directory {directory} is being trained by PID 12345 on host '
      f'node7.example (since 2024-01-01T00:00:00+00:00; lock file '
      f'{lock_file}); its liveness cannot be checked from host {HOST}')
  assert runlock.holder(directory)['host'] == 'node7.example'
  with caplog.at_level(logging.WARNING):
    with runlock.RunLock(directory, force=True):
      assert runlock.holder(directory)['host'] == HOST
  assert 'force=True' in caplog.text and 'node7.example' in caplog.text
  assert not os.path.exists(lock_file)


def test_removed_on_exception_and_records_owner(tmp_path):
  directory = str(tmp_path / 'run')
  with pytest.raises(KeyError):
    with runlock.RunLock(directory):
      owner = runlock.holder(directory)
      raise KeyError('training failed')
  assert owner['pid'] == os.getpid() and owner['host'] == HOST
  assert owner['start_time'][:4].isdigit()
  assert not os.path.exists(os.path.join(directory, runlock.LOCK_NAME))


def test_unreadable_lock_file(tmp_path, caplog):
  directory = str(tmp_path / 'run')
  os.makedirs(directory)
  path = os.path.join(directory, runlock.LOCK_NAME)
  open(path, 'w').close()  # Just created by a process still writing it.
  with pytest.raises(runlock.RunLockedError, match='being written'):
    runlock.RunLock(directory).acquire()
  old = time.time() - 3600
  os.utime(path, (old, old))  # Its writer died an hour ago.
  with caplog.at_level(logging.WARNING):
    with runlock.RunLock(directory):
      assert runlock.holder(directory)['pid'] == os.getpid()
  assert 'unreadable' in caplog.text


def test_release_leaves_a_lock_taken_over_meanwhile(tmp_path, caplog):
  directory = str(tmp_path / 'run')
  with caplog.at_level(logging.WARNING):
    with runlock.RunLock(directory):
      # Someone forced the lock away from us (e.g. force=True elsewhere).
      _write_lock(directory, pid=1, host='other', token='theirs')
  assert runlock.holder(directory)['token'] == 'theirs'
  assert 'was taken over' in caplog.text


def test_one_of_many_contenders_takes_a_stale_lock(tmp_path):
  """Four processes find the same stale lock at once: exactly one wins."""
  directory = str(tmp_path / 'run')
  _write_lock(directory, pid=_dead_pid(), host=HOST)
  go, done = str(tmp_path / 'go'), str(tmp_path / 'done')
  contenders = [_python(_CONTEND, directory, go, done) for _ in range(4)]
  try:
    for process in contenders:
      assert process.stdout.readline().strip() == 'ready'
    open(go, 'w').close()
    # The winner prints 'got' and holds on; the others exit (readline: '').
    lines = [process.stdout.readline().strip() for process in contenders]
    assert sorted(lines) == ['', '', '', 'got'], lines
    winner = contenders[lines.index('got')]
    refused = [p for p in contenders if p is not winner]
    for process in refused:
      assert process.wait(timeout=60) == 3
      assert f'PID {winner.pid} on host {HOST}' in process.stderr.read()
    open(done, 'w').close()
    assert winner.wait(timeout=60) == 0
    assert not os.path.exists(os.path.join(directory, runlock.LOCK_NAME))
    for process in contenders:
      process.stdin.close()
      process.stdout.close()
      process.stderr.close()
  finally:
    open(done, 'w').close()
    for process in contenders:
      if process.poll() is None:
        process.kill()
        process.wait()
