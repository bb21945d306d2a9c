"""Shared machinery of the real-dataset TFDS builders.

Each builder (bp4d, disfa, unbc_mcmaster, fera2017) lists its work as *jobs*
(one image sequence or one video each) grouped by subject split, and gives a
module-level `process_job(job, options, encoding, counts)` that yields
`(key, example)` pairs. This module turns that into TFDS split generators:

- in-process (`AU_JAX_BUILD_WORKERS=0`), or
- one spawned worker process per subject, at most one per core at a time
  (the default): each streams its subject's examples to a pickle file in a
  scratch folder next to the dataset; the split generator re-reads it in
  order, so memory stays at one frame. A worker that raises, dies at
  start-up (spawn re-imports the caller's main module, which a script fed
  on standard input cannot provide) or is killed (SIGKILL, out of memory)
  ends the build with a `BuildWorkerError` naming the subject and the cause;
  every other worker is stopped and the scratch folder removed. (A
  `multiprocessing.Pool` replaces dead workers and waits forever.) Or
- an Apache Beam pipeline per split (`beam_split`: one job per element)
  when the caller passes `DownloadConfig(beam_runner=...)` or `beam_options`
  (apache-beam is optional: `pip install -e ".[beam]"`; it is imported only
  then), so the big sets can build on a cluster (Dataflow, Spark, Flink).
  Its records equal the local paths' record for record
  (tests/test_beam_builds.py).

At the end of a build the counts (frames, faces found by Haar, by
landmarks, not found, not aligned, skipped frames), every named problem
(damaged frame, label/video length mismatch, missing label file) and each
AU's base rate are printed; under Beam they are also Beam metric counters
`au_jax/<name>` (shown by the runner's UI) and the summary is rebuilt from
them once the pipeline has finished.

Damaged frames (a truncated JPEG/PNG, a video frame that fails to decode)
are never stored: each is a counted skip named in the summary, and more than
$AU_JAX_MAX_DAMAGED_FRACTION (default 0.01) of a subject's frames is an
error, since a download that damaged that much is better fetched again.
"""

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
import dataclasses
import errno
import multiprocessing
from multiprocessing import connection
import os
import pickle
import re
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
from au_jax.preprocess import video as video_lib

Example = dict[str, Any]
ProcessFn = Callable[[Any, face_lib.FaceOptions, str, collections.Counter],
                     Iterator[tuple[str, Example]]]


@dataclasses.dataclass(eq=False)
class FaceBuilderConfig(tfds.core.BuilderConfig):
  """A builder config: how frames become stored face images.

  Attributes:
    image_size: stored side S (records hold [S, S, 3] uint8).
    mode: 'crop' (Haar box + margin) or 'aligned' (eye-centre similarity).
    margin: crop margin per side as a share of the face box.
    encoding: 'jpeg' (real frames) or 'png'.
  """
  image_size: int = 256
  mode: str = 'crop'
  margin: float = 0.2
  encoding: str = 'jpeg'

  def face_options(self) -> face_lib.FaceOptions:
    return face_lib.FaceOptions(image_size=self.image_size, mode=self.mode,
                                margin=self.margin)


def standard_configs() -> list[FaceBuilderConfig]:
  """crop (default) / aligned at 256 px, and 64 px 'tiny' ones for tests."""
  return [
      FaceBuilderConfig(name='crop', description='Haar face box + 20% '
                        'margin, 256x256 JPEG (default).'),
      FaceBuilderConfig(name='aligned', mode='aligned', description='Eye-'
                        'centre similarity alignment, 256x256 JPEG.'),
      FaceBuilderConfig(name='tiny', image_size=64, description='crop at '
                        '64x64, for tests and CPU smoke runs.'),
      FaceBuilderConfig(name='tiny_aligned', image_size=64, mode='aligned',
                        description='aligned at 64x64, for tests.'),
  ]


# A frame whose pixels all lie within this range of each other is blank (a
# grey fill, a lens cap, a frame the codec could not paint): no face can be in
# it, so dataset landmarks must not mark one as found.
BLANK_RANGE = 4


def frame_example(image_bgr: np.ndarray, landmarks: np.ndarray | None,
                  occurrence: np.ndarray, intensity: np.ndarray, *,
                  subject: str, sequence: str, frame_index: int, view: int,
                  identity: int, options: face_lib.FaceOptions,
                  encoding: str, counts: collections.Counter) -> Example:
  """One `records.frame_features` record from a raw frame.

  Args:
    image_bgr: [H, W, 3] uint8 frame as OpenCV reads it.
    landmarks: [68, 2] iBUG-68 frame pixels (-1 absent) or None.
    occurrence: [C] int 1/0/-1; intensity: [C] float, -1 not coded.
    counts: updated with 'frames' and 'face_<haar|landmarks|centre>',
      'not_aligned' when aligned mode fell back to a crop, and 'blank_frame'
      for a flat frame (stored with face_found=False, landmarks ignored).
  """
  if int(image_bgr.max()) - int(image_bgr.min()) <= BLANK_RANGE:
    counts['blank_frame'] += 1
    landmarks = None
  result = face_lib.process_face(image_bgr, landmarks, options)
  counts['frames'] += 1
  counts[f'face_{result.source}'] += 1
  if options.mode == 'aligned' and not result.aligned:
    counts['not_aligned'] += 1
  return {
      'image': video_lib.encode_image(result.image, encoding),
      'au_occurrence': np.asarray(occurrence, np.int8),
      'au_intensity': np.asarray(intensity, np.float32),
      'landmarks': result.landmarks,
      'face_found': bool(result.face_found),
      'subject': subject,
      'sequence': sequence,
      'frame_index': int(frame_index),
      'view': int(view),
      'emotion': -1,
      'identity': int(identity),
  }


NAMED = 'named: '
DAMAGED = 'skipped_damaged_frame'


def name_problem(counts: collections.Counter, text: str) -> None:
  """Records a problem the build summary names one by one (not just counts)."""
  counts[NAMED + text] += 1


def read_frame(path: str, where: str,
               counts: collections.Counter) -> np.ndarray | None:
  """A frame image decoded completely, or None (counted, named) if damaged.

  Args:
    path: the image file.
    where: 'subject/sequence frame N' for the summary.
    counts: gets DAMAGED and the named problem when the file is damaged.
  """
  image, reason = video_lib.decode_image_file(path)
  if image is None:
    counts[DAMAGED] += 1
    name_problem(counts, f'damaged frame {where} ({path}): {reason}')
  return image


def damaged_video_frame(video: str, where: str,
                        counts: collections.Counter) -> None:
  """Counts and names a video frame that failed to decode."""
  counts[DAMAGED] += 1
  name_problem(counts, f'damaged frame {where} ({video}): the video frame '
               'failed to decode')


def max_damaged_fraction() -> float:
  """$AU_JAX_MAX_DAMAGED_FRACTION (default 0.01): damaged frames a subject
  may lose before its build is an error."""
  value = os.environ.get('AU_JAX_MAX_DAMAGED_FRACTION', '0.01')
  try:
    fraction = float(value)
  except ValueError:
    fraction = -1.0
  if not 0 <= fraction <= 1:
    raise ValueError(f'AU_JAX_MAX_DAMAGED_FRACTION={value!r}: expected a '
                     'number in [0, 1].')
  return fraction


def check_damaged(name: str, subject: str, counts: collections.Counter,
                  fraction: float | None = None) -> None:
  """Raises a ValueError when too many of a subject's frames were damaged.

  Args:
    name: dataset name; subject: the split; counts: that subject's counts.
    fraction: the limit; None reads `max_damaged_fraction()` here.
  """
  damaged = counts[DAMAGED]
  total = counts['frames'] + damaged
  if fraction is None:
    fraction = max_damaged_fraction()
  if damaged and damaged > fraction * total:
    named = sorted(k[len(NAMED):] for k in counts
                   if k.startswith(NAMED + 'damaged frame'))
    raise ValueError(
        f'{name} subject {subject}: {damaged} of {total} frames are damaged '
        f'(more than AU_JAX_MAX_DAMAGED_FRACTION={fraction:g}; fetch those '
        f'files again or raise the limit). First: {"; ".join(named[:3])}')


def num_workers(num_splits: int) -> int:
  """Worker processes: $AU_JAX_BUILD_WORKERS, else one per core."""
  requested = os.environ.get('AU_JAX_BUILD_WORKERS')
  workers = int(requested) if requested else (os.cpu_count() or 1)
  return max(0, min(workers, num_splits))


def wants_beam(download_config: tfds.download.DownloadConfig) -> bool:
  return (download_config.beam_runner is not None or
          download_config.beam_options is not None)


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


def split_generators(
    name: str, aus: Sequence[int], jobs: dict[str, list[Any]],
    process_job: ProcessFn, config: FaceBuilderConfig, use_beam: bool,
    scratch_root: str, cleanups: list[Callable[[], None]] | None = None,
    listing_counts: collections.Counter | None = None) -> dict[str, Any]:
  """{split: generator or beam PTransform} for `_split_generators`.

  Args:
    name: dataset name (for the log).
    aus: the record AU order (for base rates).
    jobs: split name -> that subject's jobs, in output order.
    process_job: module-level function (picklable) yielding (key, example).
    config: the builder config.
    use_beam: build a Beam PTransform per split (needs apache-beam).
    scratch_root: folder for the workers' temporary files.
    cleanups: gets a function that stops the workers and removes the
      scratch, for the caller to run if the build fails outside the split
      generators (e.g. a failing write); running it twice is harmless.
  """
  options, encoding = config.face_options(), config.encoding
  if use_beam:  # The summary is printed from Beam's counters at the end.
    return {split: beam_split(name, split, split_jobs, process_job, options,
                              encoding, aus)
            for split, split_jobs in jobs.items()}
  stats = BuildStats(name, aus, len(jobs))
  stats.counts.update(listing_counts or {})
  workers = num_workers(len(jobs))
  if workers == 0:
    return {split: _in_process(name, split, split_jobs, process_job, options,
                               encoding, stats)
            for split, split_jobs in jobs.items()}
  runner = WorkerRunner(name, jobs, process_job, options, encoding, workers,
                        scratch_root)
  if cleanups is not None:
    cleanups.append(runner.close)
  return {split: runner.examples(split, stats) for split in jobs}


def examples(jobs: Iterable[Any], process_job: ProcessFn,
             config: FaceBuilderConfig) -> Iterator[tuple[str, Example]]:
  """All (key, example) of `jobs`, in this process (counts are dropped)."""
  counts = collections.Counter()
  for job in jobs:
    yield from process_job(job, config.face_options(), config.encoding,
                           counts)


def _in_process(name, split, jobs, process_job, options, encoding, stats):
  counts = collections.Counter()
  for job in jobs:
    for key, example in process_job(job, options, encoding, counts):
      stats.add(example)
      yield key, example
  check_damaged(name, split, counts)
  stats.split_done(counts)


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


def sorted_frames(folder: str, extensions: Iterable[str]) -> dict[int, str]:
  """{frame number: path} of a folder's images, whatever the zero padding.

  BP4D pads frame names to 4 digits but M009-M018 to 3; UNBC names end in
  the frame number. The number is the stem's last run of digits.

  Raises:
    FileNotFoundError naming `folder` when it does not exist.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'Frame folder {folder} does not exist.')
  extensions = tuple(e.lower() for e in extensions)
  frames = {}
  for entry in os.listdir(folder):
    stem, ext = os.path.splitext(entry)
    number = frame_number(stem)
    if ext.lower() not in extensions or number is None:
      continue
    if number in frames:
      raise ValueError(f'Frames {frames[number]} and {entry} in {folder} '
                       f'both have number {number}.')
    frames[number] = os.path.join(folder, entry)
  return dict(sorted(frames.items()))


def frame_number(stem: str) -> int | None:
  """Last run of digits in a file stem ('l0012_lm' -> 12), or None."""
  found = re.findall(r'\d+', stem)
  return int(found[-1]) if found else None


def require_file(path: str, what: str) -> str:
  """`path`, or a FileNotFoundError naming it and what it should hold."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'Missing {what}: {path}')
  return path


def paired_labels(index: int, label_frames: Sequence[Any],
                  occurrence: np.ndarray, intensity: np.ndarray,
                  counts: Any) -> tuple[int, np.ndarray, np.ndarray]:
  """(frame number, occurrence [C], intensity [C]) of video frame `index`.

  Row i of a label file labels video frame i (DISFA, FERA 2017). Frames past
  the last row get the next frame numbers and -1 labels, and are counted in
  counts['frames_without_labels'].
  """
  if index < len(label_frames):
    return int(label_frames[index]), occurrence[index], intensity[index]
  counts['frames_without_labels'] += 1
  unknown = np.full(occurrence.shape[1:], -1)
  last = int(label_frames[-1]) if len(label_frames) else 0
  return last + index - len(label_frames) + 1, unknown, unknown


def labelled_video_frames(
    video: str, label_file: str, label_frames: Sequence[Any],
    occurrence: np.ndarray, intensity: np.ndarray, where: str,
    counts: collections.Counter
) -> Iterator[tuple[int, np.ndarray, int, np.ndarray, np.ndarray]]:
  """Yields (index, image, frame number, occurrence, intensity) per frame.

  Video frame i pairs with label row i (`paired_labels`). A frame that
  fails to decode keeps its place (so later rows stay paired), is not
  yielded, and is counted and named (`damaged_video_frame`). When the video
  and the label rows differ in length, the summary names both counts.

  Args:
    video: the video file; label_file: the label file (for the summary).
    label_frames: [N] frame numbers; occurrence / intensity: [N, C].
    where: 'subject/sequence' for the summary.
    counts: the subject's counts.
  """
  length, declared = 0, 0
  for index, (image, declared) in enumerate(
      video_lib.checked_video_frames(video)):
    length = index + 1
    frame_index, labels, levels = paired_labels(
        index, label_frames, occurrence, intensity, counts)
    if image is None:
      damaged_video_frame(video, f'{where} frame {frame_index}', counts)
      continue
    yield index, image, frame_index, labels, levels
  if length < len(label_frames):
    counts['skipped_label_rows_without_frame'] += len(label_frames) - length
  if length != len(label_frames):
    stated = (f' (its container declares {declared})'
              if declared and declared != length else '')
    name_problem(counts, f'{where}: video {video} has {length} frames'
                 f'{stated}, label file {label_file} has {len(label_frames)} '
                 'rows; frames past the rows are stored with unknown labels, '
                 'rows past the frames are dropped')


class FaceFramesBuilder(tfds.core.GeneratorBasedBuilder,
                        skip_registration=True):
  """TFDS plumbing shared by the real-dataset builders.

  A dataset's builder sets DATASET (an aus.DATASET_AUS key), HOMEPAGE and
  MANUAL_DOWNLOAD_INSTRUCTIONS, and its module defines `list_jobs(root)` and
  `process_job(...)` (module-level, so worker processes can unpickle them by
  name), returned by `jobs` and `job_function`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First au_jax release.'}
  BUILDER_CONFIGS = standard_configs()
  DATASET = ''
  HOMEPAGE = ''

  def jobs(self, manual_dir: str) -> dict[str, list[Any]]:
    """{split name: [job, ...]} found under the manual download.

    Problems found while listing (e.g. a sequence without its label file)
    go to `self.listing_counts` (a Counter; `name_problem`) so the build
    summary names them.
    """
    raise NotImplementedError

  def job_function(self) -> ProcessFn:
    """The module-level function that turns one job into examples."""
    raise NotImplementedError

  def _aus(self) -> tuple[int, ...]:
    from au_jax import aus as aus_lib  # pylint: disable=g-import-not-at-top
    return aus_lib.DATASET_AUS[self.DATASET]

  def _info(self) -> tfds.core.DatasetInfo:
    from au_jax import records  # pylint: disable=g-import-not-at-top
    config = self.builder_config
    return self.dataset_info_from_configs(
        features=records.frame_features(len(self._aus()), config.image_size,
                                        config.encoding),
        disable_shuffling=True,  # Keep frame order: flow, smoothing.
        homepage=self.HOMEPAGE)

  def _download_and_prepare(self, dl_manager, download_config):
    self._use_beam = wants_beam(download_config)
    self._cleanups = []
    try:
      return super()._download_and_prepare(dl_manager, download_config)
    finally:
      # A failure outside the split generators (a failing write, Ctrl-C
      # between splits) must still stop the workers and remove the scratch;
      # TFDS removes its own incomplete.* folder.
      for cleanup in self._cleanups:
        cleanup()

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    self.listing_counts = collections.Counter()
    jobs = self.jobs(str(dl_manager.manual_dir))
    return split_generators(
        self.DATASET, self._aus(), jobs, self.job_function(),
        self.builder_config, getattr(self, '_use_beam', False),
        str(self._data_dir_root), getattr(self, '_cleanups', None),
        self.listing_counts)

  def _process_pipeline_result(self, pipeline_result) -> None:
    """Prints the build summary of a Beam build from its counters."""
    print(summary_from_counters(self.DATASET, self._aus(), pipeline_result,
                                getattr(self, 'listing_counts', None)),
          flush=True)

  def _generate_examples(self, jobs: list[Any]):
    """One subject's examples in this process (TFDS requires the method;
    `_split_generators` uses the parallel/Beam path above instead)."""
    yield from examples(jobs, self.job_function(), self.builder_config)
