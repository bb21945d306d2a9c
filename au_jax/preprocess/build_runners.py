"""Where a real-dataset build's jobs run, and the summary they feed.

`frames.split_generators` runs each split's jobs in-process, in an Apache
Beam pipeline per split (build_beam.py), or hands them to

- `WorkerRunner`: one spawned worker process per subject, at most one per
  core at a time (the default): each streams its subject's examples to a
  pickle file in a scratch folder next to the dataset; the split generator
  re-reads it in order, so memory stays at one frame. Workers do not re-run
  the caller's main module (`au_jax.spawn_without_main`), so a build runs
  from a script without a main guard, one fed on standard input, or a
  notebook. A worker that raises, dies at start-up or is killed (SIGKILL,
  out of memory) ends the build with a `BuildWorkerError` naming the
  subject and the cause; every other worker is stopped and the scratch
  folder removed. (A `multiprocessing.Pool` replaces dead workers and waits
  forever.)

At the end of a build the counts (frames, faces found by Haar, by
landmarks, not found, not aligned, skipped frames), every named problem
(damaged frame, label/video length mismatch, missing label file) and each
AU's base rate are printed (`BuildStats`); under Beam they are also Beam
metric counters, from which build_beam.py rebuilds the summary.
"""

import collections
from collections.abc import Callable, Iterator, Sequence
import errno
import multiprocessing
from multiprocessing import connection
import os
import pickle
import shutil
import signal
import sys
import tempfile
import traceback
from typing import Any

import cv2
import numpy as np

import au_jax
from au_jax.preprocess import face as face_lib
from au_jax.preprocess.frame_reading import NAMED
from au_jax.preprocess.frame_reading import check_damaged

Example = dict[str, Any]
ProcessFn = Callable[[Any, face_lib.FaceOptions, str, collections.Counter],
                     Iterator[tuple[str, Example]]]


class BuildStats:
  """Frame/face counts and AU base rates, logged when the last split ends."""

  def __init__(self, name: str, aus: Sequence[int], num_splits: int):
    self.name, self.aus, self.remaining = name, tuple(aus), num_splits
    self.counts = collections.Counter()
    self.positive = np.zeros(len(aus), np.int64)
    self.labelled = np.zeros(len(aus), np.int64)

  def add(self, example: Example) -> None:
    occurrence = example['au_occurrence']
    self.positive += occurrence == 1
    self.labelled += occurrence >= 0

  def split_done(self, counts: collections.Counter) -> None:
    self.counts.update(counts)
    self.remaining -= 1
    if self.remaining == 0:
      # Printed like prepare.py's own summary: absl hides INFO logs unless
      # run under app.run, and under app.run a log line would repeat it.
      print(self.summary(), flush=True)

  def summary(self) -> str:
    c = self.counts
    lines = [
        f'{self.name}: {c["frames"]} frames; face by dlib HOG '
        f'{c["face_hog"]}, dlib CNN {c["face_cnn"]}, Haar {c["face_haar"]}, '
        f'dataset landmarks (detector missed) {c["face_landmarks"]}, not '
        f'found (centre crop, face_found=False) {c["face_centre"]}; '
        f'landmarks from the dataset {c["landmarks_from_dataset"]}, from the '
        f'detector {c["landmarks_from_detector"]}, none '
        f'{c["landmarks_missing"]}; aligned-mode fallbacks to crop '
        f'{c["not_aligned"]}.']
    standard = ('frames', 'face_hog', 'face_cnn', 'face_haar',
                'face_landmarks', 'face_centre', 'landmarks_from_dataset',
                'landmarks_from_detector', 'landmarks_missing', 'not_aligned')
    named = sorted(k[len(NAMED):] for k in c if k.startswith(NAMED))
    skips = {k: v for k, v in sorted(c.items()) if k.startswith('skipped_')}
    if skips:
      lines.append(f'{self.name}: skipped (counted, not written): {skips}')
    notes = {k: v for k, v in sorted(c.items())
             if v and k not in standard and k not in skips and
             not k.startswith(NAMED)}
    if notes:
      lines.append(f'{self.name}: other counts: {notes}')
    shown = 50  # A badly damaged download must not flood the terminal.
    for text in named[:shown]:
      lines.append(f'{self.name}: {text}')
    if len(named) > shown:
      lines.append(f'{self.name}: ... and {len(named) - shown} more named '
                   'problems.')
    rates = ', '.join(
        f'AU{au} {p / max(n, 1):.3f} ({n} labelled)'
        for au, p, n in zip(self.aus, self.positive, self.labelled))
    lines.append(f'{self.name}: AU base rates: {rates}')
    return '\n'.join(lines)


SCRATCH_PREFIX = '.{name}_frames_'


class BuildWorkerError(RuntimeError):
  """A build worker raised, died at start-up or was killed."""


class WorkerRunner:
  """One spawned process per subject, at most `workers` alive at a time.

  Processes, not a pool, so every subject's exit is seen: a pool hides which
  task a dead worker held (and multiprocessing.Pool replaces it and waits
  forever). Each worker writes `<i>.started` (its pid), streams examples to
  `<i>.pkl`, then writes `<i>.counts` or, when it raises, `<i>.error`. The
  parent reads the outputs in split order while later subjects run.
  """

  def __init__(self, name: str, jobs: dict[str, list[Any]],
               process_job: ProcessFn, options: face_lib.FaceOptions,
               encoding: str, workers: int, scratch_root: str):
    self.name, self.jobs, self.process_job = name, jobs, process_job
    self.options, self.encoding, self.workers = options, encoding, workers
    self.order = list(jobs)
    self.scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX.format(name=name),
                                    dir=scratch_root)
    self.processes: dict[str, Any] = {}

  def _path(self, split: str, suffix: str) -> str:
    return os.path.join(self.scratch, f'{self.order.index(split)}.{suffix}')

  def _start(self, split: str) -> None:
    # spawn, not fork: a forked child inherits OpenCV's thread pool in a
    # broken state once the parent has run cv2 (seen: Haar detection hangs
    # in every worker). The worker runs library code only, so it skips the
    # caller's main module, which may be a script without a main guard.
    process = multiprocessing.get_context('spawn').Process(
        target=_worker_main, name=f'{self.name}-build-{split}',
        args=(self.process_job, split, self.jobs[split], self.options,
              self.encoding, self.name, self._path(split, '')),
        daemon=True)
    with au_jax.spawn_without_main():
      process.start()
    self.processes[split] = process

  def _top_up(self) -> None:
    running = sum(p.exitcode is None for p in self.processes.values())
    for split in self.order:
      if running >= self.workers:
        return
      if split not in self.processes:
        self._start(split)
        running += 1

  def _wait(self, split: str) -> None:
    """Waits for `split`'s worker; raises as soon as any worker failed."""
    if split not in self.processes:
      self._start(split)
    while True:
      self._top_up()
      for other, process in self.processes.items():
        if process.exitcode not in (None, 0):
          raise self._failure(other, process)
      if self.processes[split].exitcode == 0:
        return
      alive = [p.sentinel for p in self.processes.values()
               if p.exitcode is None]
      connection.wait(alive, timeout=5.0)

  def _failure(self, split: str, process: Any) -> BuildWorkerError:
    where = (f'{self.name}: the build worker for subject {split} '
             f'(pid {process.pid})')
    error_path = self._path(split, 'error')
    if os.path.exists(error_path):
      try:
        with open(error_path, 'rb') as f:
          error, text = pickle.load(f)
      except Exception as e:  # pylint: disable=broad-except
        # Some exception types cannot be rebuilt from their pickle.
        error, text = RuntimeError(f'(error report unreadable: {e!r})'), ''
      failure = BuildWorkerError(f'{where} failed: {type(error).__name__}: '
                                 f'{error}')
      failure.__cause__ = error
      failure.add_note(f'Worker traceback:\n{text}')
      return failure
    code = process.exitcode
    if code < 0:
      try:
        signal_name = signal.Signals(-code).name
      except ValueError:
        signal_name = f'signal {-code}'
      hint = (' (out of memory? The kernel\'s OOM killer sends SIGKILL: '
              'lower AU_JAX_BUILD_WORKERS)' if -code == signal.SIGKILL
              else '')
      return BuildWorkerError(f'{where} was killed by {signal_name}{hint}; '
                              'the build stopped and its scratch is removed.')
    if not os.path.exists(self._path(split, 'started')):
      return BuildWorkerError(
          f'{where} died at start-up (exit code {code}) before it read a '
          'frame: it could not load its job (its error is on standard '
          'error above; the job function must be a module-level function of '
          'an importable module). AU_JAX_BUILD_WORKERS=0 builds in this '
          'process.')
    return BuildWorkerError(f'{where} exited with code {code} mid-build '
                            'without reporting an error.')

  def examples(self, split: str, stats: BuildStats
               ) -> Iterator[tuple[str, Example]]:
    """`split`'s examples in order, once its worker has finished."""
    try:
      self._wait(split)
      with open(self._path(split, 'counts'), 'rb') as f:
        counts = pickle.load(f)
      with open(self._path(split, 'pkl'), 'rb') as f:
        while True:
          try:
            key, example = pickle.load(f)
          except EOFError:
            break
          stats.add(example)
          yield key, example
      os.remove(self._path(split, 'pkl'))
      stats.split_done(counts)
    except BaseException:
      # Any failure (a worker's, the writer's, Ctrl-C, an abandoned
      # generator) stops every worker and leaves no scratch behind.
      self.close()
      raise
    if split == self.order[-1]:
      self.close()

  def close(self) -> None:
    """Stops live workers and removes the scratch folder (idempotent)."""
    for process in self.processes.values():
      if process.exitcode is None:
        process.kill()
    for process in self.processes.values():
      process.join()
    shutil.rmtree(self.scratch, ignore_errors=True)


# Test hook: '<subject>:<kill|raise|nospace>' makes that subject's worker
# SIGKILL itself, raise, or fail a write as a full disk does, after its first
# example (tests/test_build_faults.py). Never set outside tests.
FAULT_ENV = '_AU_JAX_TEST_BUILD_FAULT'


def _inject_fault(split: str, path: str) -> None:
  subject, _, fault = os.environ.get(FAULT_ENV, '').partition(':')
  if subject != split:
    return
  if fault == 'kill':
    os.kill(os.getpid(), signal.SIGKILL)
  elif fault == 'raise':
    raise RuntimeError(f'injected fault in the worker for {split}')
  elif fault == 'nospace':
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _worker_main(process_job, split, jobs, options, encoding, name, stem):
  """Worker process: one subject's examples to `<stem>pkl`, then counts."""
  try:
    with open(stem + 'started', 'w') as f:
      f.write(str(os.getpid()))
    cv2.setNumThreads(1)  # One core per worker; OpenCV threads would fight.
    counts = collections.Counter()
    with open(stem + 'pkl', 'wb') as f:
      for job in jobs:
        for key_example in process_job(job, options, encoding, counts):
          pickle.dump(key_example, f, protocol=pickle.HIGHEST_PROTOCOL)
          _inject_fault(split, stem + 'pkl')
    check_damaged(name, split, counts)
    with open(stem + 'counts.tmp', 'wb') as f:
      pickle.dump(counts, f)
    os.replace(stem + 'counts.tmp', stem + 'counts')
  except BaseException as e:  # pylint: disable=broad-except
    text = traceback.format_exc()
    try:
      payload = pickle.dumps((e, text))
    except Exception:  # pylint: disable=broad-except  (unpicklable error)
      payload = pickle.dumps((RuntimeError(repr(e)), text))
    with open(stem + 'error', 'wb') as f:
      f.write(payload)
    sys.exit(1)
