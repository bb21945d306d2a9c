"""One run directory, one writer.

Two processes training into one run directory (a job submitted twice, two
shells) would write the same checkpoints and results at once. `RunLock`
makes the second one stop at start-up, naming the owner:

  with runlock.RunLock(run_dir):
    ...train...

The lock is a file `<run_dir>/run.lock` created with O_CREAT | O_EXCL (atomic
on local file systems and NFSv3+) holding JSON {pid, host, start_time, ...};
it is removed on exit, also on an exception. A process killed with SIGKILL
cannot remove it, so a lock whose owner is gone is taken over with a
warning:
  - same host, PID not running (or running but started at another time:
    the PID was reused) -> stale, taken over;
  - another host -> refused, since its liveness cannot be checked from here,
    unless `force=True` (the user says that job is dead);
  - a file that is not a lock we wrote (empty, bad JSON): taken over with a
    warning once it is older than `UNREADABLE_GRACE_S` (a writer that has
    just created it may still be writing).
Inspecting and replacing a stale lock happens under `flock` on the run
directory, so two processes that find the same stale lock cannot both take
it (where the file system has no flock, e.g. some NFS mounts, that guard is
skipped; O_EXCL still keeps two fresh starts apart).

Multi-host training: take the lock in process 0 only; other hosts' processes
are parts of the same run.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
import uuid
from typing import Any

from absl import logging

LOCK_NAME = 'run.lock'
UNREADABLE_GRACE_S = 10.0


class RunLockedError(RuntimeError):
  """The run directory is being written by another process."""


def _process_start(pid: int) -> int | None:
  """Start time of `pid` in clock ticks since boot (Linux), else None.

  Recorded in the lock so that a dead owner whose PID was reused by an
  unrelated process is still recognised as dead.
  """
  try:
    with open(f'/proc/{pid}/stat', encoding='ascii') as stat:
      # The command name (field 2) may hold spaces; fields after ')' split.
      fields = stat.read().rsplit(')', 1)[1].split()
    if fields[0] == 'Z':  # A zombie has exited; only its parent holds it.
      return -1
    return int(fields[19])  # Field 22 of proc(5): starttime.
  except (OSError, IndexError, ValueError):
    return None


def _alive(pid: int, process_start: int | None) -> bool:
  """Whether `pid` on this host is the process that wrote the lock."""
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Exists, owned by another user.
  now_start = _process_start(pid)
  if now_start == -1:
    return False
  if process_start is not None and now_start is not None:
    return now_start == process_start
  return True


@contextlib.contextmanager
def _directory_guard(directory: str):
  """Exclusive flock on `directory` while a lock is inspected/replaced."""
  fd = os.open(directory, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:  # No flock on this file system: no guard.
      logging.debug('runlock: no flock on %s (%s)', directory, error)
    yield
  finally:
    os.close(fd)  # Also releases the flock.


class RunLock:
  """Context manager: this process is the only writer of `directory`.

  Args:
    directory: the run directory (created if missing).
    force: take over a lock held by a process on another host (whose
      liveness cannot be checked). A live process on this host is never
      taken over.

  Raises (on enter):
    RunLockedError: a live process owns the directory; the one-line message
      names its PID, host, start time and the lock file.
  """

  def __init__(self, directory: str, force: bool = False):
    self.directory = os.path.abspath(os.path.expanduser(directory))
    self.path = os.path.join(self.directory, LOCK_NAME)
    self.force = force
    self._token: str | None = None

  def _owner(self) -> dict[str, Any] | None:
    """The lock file's JSON, or None if it is unreadable."""
    try:
      with open(self.path, encoding='utf-8') as file:
        owner = json.load(file)
      if isinstance(owner, dict) and isinstance(owner.get('pid'), int):
        return owner
    except (OSError, ValueError):
      pass
    return None

  def _create(self) -> bool:
    """Writes our lock file; False if one exists."""
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    token = uuid.uuid4().hex
    owner = {
        'pid': os.getpid(),
        'host': socket.gethostname(),
        'start_time': datetime.datetime.now().astimezone().isoformat(
            timespec='seconds'),
        'process_start': _process_start(os.getpid()),
        'token': token,
    }
    try:
      with os.fdopen(fd, 'w', encoding='utf-8') as file:
        json.dump(owner, file)
        file.flush()
        os.fsync(file.fileno())
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(self.path)
      raise
    self._token = token
    return True

  def _refuse(self, owner: dict[str, Any], why: str) -> RunLockedError:
    return RunLockedError(
        f'Run directory {self.directory} is being trained by PID '
        f'{owner["pid"]} on host {owner.get("host")} (since '
        f'{owner.get("start_time")}; lock file {self.path}){why}')

  def _stale(self, owner: dict[str, Any] | None) -> str | None:
    """Why the existing lock may be taken over; None if it is gone.

    Raises RunLockedError if it may not be taken over.
    """
    if owner is None:
      try:
        age = time.time() - os.path.getmtime(self.path)
      except FileNotFoundError:
        return None  # Its owner just finished: try again.
      if age < UNREADABLE_GRACE_S:
        raise RunLockedError(
            f'Run directory {self.directory} has a lock file {self.path} '
            f'that is being written ({age:.1f} s old); another process is '
            'starting on it.')
      return f'the lock file is unreadable ({age:.0f} s old)'
    host = owner.get('host')
    if host == socket.gethostname():
      if _alive(owner['pid'], owner.get('process_start')):
        raise self._refuse(owner, '; wait for it to finish or stop it.')
      return f'PID {owner["pid"]} on this host is no longer running'
    if self.force:
      return (f'force=True (PID {owner["pid"]} on host {host} cannot be '
              'checked from here)')
    raise self._refuse(
        owner, f'; its liveness cannot be checked from host '
        f'{socket.gethostname()}: if that job is dead, remove the lock file '
        'or pass force.')

  def acquire(self) -> None:
    os.makedirs(self.directory, exist_ok=True)
    if self._create():
      return
    with _directory_guard(self.directory):
      # A few rounds: the owner may finish (and remove its lock) meanwhile.
      for _ in range(3):
        if self._create():
          return
        owner = self._owner()
        why = self._stale(owner)
        if why is None:
          continue
        logging.warning('Taking over the lock of run directory %s from %s: '
                        '%s.', self.directory,
                        (f'PID {owner["pid"]} on host {owner.get("host")}'
                         if owner else 'an unknown process'), why)
        with contextlib.suppress(FileNotFoundError):
          os.remove(self.path)
    raise RunLockedError(f'Could not take the lock {self.path}: other '
                         'processes keep creating it.')

  def release(self) -> None:
    """Removes the lock file if it is still ours."""
    if self._token is None:
      return
    owner = self._owner()
    if owner is not None and owner.get('token') == self._token:
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)
    else:
      logging.warning('Lock %s was taken over by %s while this process held '
                      'it; leaving it.', self.path,
                      f'PID {owner["pid"]} on host {owner.get("host")}'
                      if owner else 'an unknown process')
    self._token = None

  def __enter__(self) -> 'RunLock':
    self.acquire()
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.release()


def holder(directory: str) -> dict[str, Any] | None:
  """The JSON of `directory`'s lock file (pid, host, start_time), or None."""
  return RunLock(directory)._owner()  # pylint: disable=protected-access

