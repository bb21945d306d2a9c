"""Where a real-dataset build's jobs run, and the summary they feed.

`frames.split_generators` runs each split's jobs in-process or hands them to

- `WorkerRunner`: one spawned worker process per subject, at most one per
  core at a time (the default): each streams its subject's examples to a
  pickle file in a scratch folder next to the dataset; the split generator
  re-reads it in order, so memory stays at one frame. A worker that raises,
  dies at start-up (spawn re-imports the caller's main module, which a
  script fed on standard input cannot provide) or is killed (SIGKILL, out of
  memory) ends the build with a `BuildWorkerError` naming the subject and
  the cause; every other worker is stopped and the scratch folder removed.
  (A `multiprocessing.Pool` replaces dead workers and waits forever.) Or
- `beam_split`: an Apache Beam pipeline per split (one job per element)
  when the caller passes `DownloadConfig(beam_runner=...)` or `beam_options`
  (apache-beam is optional: `pip install -e ".[beam]"`; it is imported only
  then), so the big sets can build on a cluster (Dataflow, Spark, Flink).
  Its records equal the local paths' record for record
  (tests/test_beam_builds.py).

At the end of a build the counts (frames, faces found by Haar, by
landmarks, not found, not aligned, skipped frames), every named problem
(damaged frame, label/video length mismatch, missing label file) and each
AU's base rate are printed (`BuildStats`); under Beam they are also Beam
metric counters `au_jax/<name>` (shown by the runner's UI) and the summary
is rebuilt from them once the pipeline has finished
(`summary_from_counters`).

`au_jax.preprocess.frames` re-exports the public names; import them from
there.
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
import tensorflow_datasets as tfds

from au_jax.preprocess import face as face_lib
from au_jax.preprocess.frame_reading import NAMED
from au_jax.preprocess.frame_reading import check_damaged
from au_jax.preprocess.frame_reading import max_damaged_fraction

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
        f'{self.name}: {c["frames"]} frames; face by Haar {c["face_haar"]}, '
        f'by dataset landmarks (Haar missed) {c["face_landmarks"]}, not found '
        f'(centre crop, face_found=False) {c["face_centre"]}; aligned-mode '
        f'fallbacks to crop {c["not_aligned"]}.']
    standard = ('frames', 'face_haar', 'face_landmarks', 'face_centre',
                'not_aligned')
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
    # in every worker). Spawn re-imports the caller's main module.
    process = multiprocessing.get_context('spawn').Process(
        target=_worker_main, name=f'{self.name}-build-{split}',
        args=(self.process_job, split, self.jobs[split], self.options,
              self.encoding, self.name, self._path(split, '')),
        daemon=True)
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
          f'frame. Spawned workers re-import the main module{_main_hint()}: '
          'run the build from a saved script with an `if __name__ == '
          '"__main__":` guard or with `python -m au_jax.prepare`, or set '
          'AU_JAX_BUILD_WORKERS=0 to build in this process.')
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


def _main_hint() -> str:
  main = sys.modules.get('__main__')
  path = getattr(main, '__file__', None)
  if getattr(main, '__spec__', None) is None and path and not os.path.exists(
      path):
    return (f', and here it is {path!r}, which is not a file (a script fed '
            'on standard input?)')
  return ''


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


# Beam keys: (job index << KEY_BITS) | frame position within the job. TFDS's
# BeamWriter sorts a disable_shuffling split by key and shards it with
# `key * num_shards / largest_key`, so the keys must be non-negative ints in
# output order (the in-process path's string keys raise a TypeError there).
KEY_BITS = 32
BEAM_NAMESPACE = 'au_jax'
_COUNTS_TAG = 'counts'
_POSITIVE, _LABELLED = 'positive_AU', 'labelled_AU'


def beam_key(job_index: int, position: int) -> int:
  """The int key of frame `position` of job `job_index` (see KEY_BITS)."""
  if not 0 <= position < 1 << KEY_BITS:
    raise ValueError(f'Frame position {position} of job {job_index} does '
                     f'not fit in {KEY_BITS} bits.')
  return (job_index << KEY_BITS) | position


def beam_split(name: str, split: str, jobs: Sequence[Any],
               process_job: ProcessFn, options: face_lib.FaceOptions,
               encoding: str, aus: Sequence[int]) -> Any:
  """A Beam PTransform (pipeline -> (int key, example)) for one split.

  One job per element, so a runner spreads a subject's sequences (or a
  split's videos) over its workers. Each job also emits its counts and AU
  tallies on a side output, summed per split by a final step that applies
  the same per-subject damaged-frame limit as the local paths (raising
  there fails the pipeline, so nothing is written) and publishes them as
  Beam counters `au_jax/<name>` (`summary_from_counters` turns them back
  into the local build summary).
  """
  beam = tfds.core.lazy_imports.apache_beam
  # Read here: a cluster's workers do not see the launcher's environment.
  limit = max_damaged_fraction()

  def expand(pipeline):
    processed = (
        pipeline
        | 'Create' >> beam.Create(list(enumerate(jobs)))
        | 'Process' >> beam.FlatMap(
            _beam_process, process_job, options, encoding, len(aus)
        ).with_outputs(_COUNTS_TAG, main='examples'))
    _ = (processed[_COUNTS_TAG]
         | 'SumCounts' >> beam.CombineGlobally(_sum_tallies)
         | 'CheckCounts' >> beam.Map(_beam_split_done, name, split,
                                     tuple(aus), limit))
    return processed.examples

  return beam.ptransform_fn(expand)()


def _beam_process(indexed_job, process_job, options, encoding, num_aus):
  """One job's (int key, example)s, then its tallies on the counts output."""
  beam = tfds.core.lazy_imports.apache_beam
  job_index, job = indexed_job
  counts = collections.Counter()
  positive = np.zeros(num_aus, np.int64)
  labelled = np.zeros(num_aus, np.int64)
  position = 0
  for _, example in process_job(job, options, encoding, counts):
    occurrence = example['au_occurrence']
    positive += occurrence == 1
    labelled += occurrence >= 0
    yield beam_key(job_index, position), example
    position += 1
  yield beam.pvalue.TaggedOutput(_COUNTS_TAG, (counts, positive, labelled))


def _sum_tallies(tallies):
  counts, positive, labelled = collections.Counter(), 0, 0
  for c, p, n in tallies:
    counts.update(c)
    positive, labelled = positive + p, labelled + n
  return counts, positive, labelled


def _beam_split_done(tallies, name, split, aus, limit):
  beam = tfds.core.lazy_imports.apache_beam
  counts, positive, labelled = tallies
  check_damaged(name, split, counts, limit)
  metric = beam.metrics.Metrics.counter
  for key, value in counts.items():
    if value:
      metric(BEAM_NAMESPACE, key).inc(value)
  for au, p, n in zip(aus, np.broadcast_to(positive, len(aus)),
                      np.broadcast_to(labelled, len(aus))):
    metric(BEAM_NAMESPACE, f'{_POSITIVE}{au}').inc(int(p))
    metric(BEAM_NAMESPACE, f'{_LABELLED}{au}').inc(int(n))


def summary_from_counters(name: str, aus: Sequence[int], pipeline_result: Any,
                          listing_counts: collections.Counter | None = None
                          ) -> str:
  """The local build summary, from a finished pipeline's au_jax counters."""
  beam = tfds.core.lazy_imports.apache_beam
  query = pipeline_result.metrics().query(
      beam.metrics.MetricsFilter().with_namespace(BEAM_NAMESPACE))
  totals = collections.Counter(listing_counts or {})
  for result in query['counters']:
    value = result.committed
    if value is None:  # Runners without committed metrics.
      value = result.attempted
    totals[result.key.metric.name] += int(value or 0)
  stats = BuildStats(name, aus, 1)
  for i, au in enumerate(stats.aus):
    stats.positive[i] = totals.pop(f'{_POSITIVE}{au}', 0)
    stats.labelled[i] = totals.pop(f'{_LABELLED}{au}', 0)
  stats.counts.update(totals)
  return stats.summary()
