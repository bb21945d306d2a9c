"""Shared machinery of the real-dataset TFDS builders.

Each builder (bp4d, disfa, unbc_mcmaster, fera2017) lists its work as *jobs*
(one image sequence or one video each) grouped by subject split, and gives a
module-level `process_job(job, options, encoding, counts)` that yields
`(key, example)` pairs. This module turns that into TFDS split generators:

- in-process (`AU_JAX_BUILD_WORKERS=0`), or
- a process pool over subjects (the default, one worker per core): each worker
  streams its subject's examples to a pickle file next to the dataset; the
  split generator re-reads it in order, so memory stays at one frame, or
- an Apache Beam pipeline per split (`beam.Create(jobs) | beam.FlatMap`) when
  the caller passes `DownloadConfig(beam_runner=...)` or `beam_options`
  (apache-beam is optional: it is imported only then), so the big sets can
  build on a cluster one job per worker.

At the end of a local build the counts (frames, faces found by Haar, by
landmarks, not found, not aligned, skipped frames) and each AU's base rate are
printed; under Beam they are Beam metric counters `au_jax/<name>`.
"""

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
import dataclasses
import multiprocessing
import os
import pickle
import re
import shutil
import tempfile
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
    counts: updated with 'frames' and 'face_<haar|landmarks|centre>', and
      'not_aligned' when aligned mode fell back to a crop.
  """
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
    skips = {k: v for k, v in sorted(c.items()) if k.startswith('skipped_')}
    if skips:
      lines.append(f'{self.name}: skipped (counted, not written): {skips}')
    notes = {k: v for k, v in sorted(c.items())
             if v and k not in standard and k not in skips}
    if notes:
      lines.append(f'{self.name}: other counts: {notes}')
    rates = ', '.join(
        f'AU{au} {p / max(n, 1):.3f} ({n} labelled)'
        for au, p, n in zip(self.aus, self.positive, self.labelled))
    lines.append(f'{self.name}: AU base rates: {rates}')
    return '\n'.join(lines)


def split_generators(
    name: str, aus: Sequence[int], jobs: dict[str, list[Any]],
    process_job: ProcessFn, config: FaceBuilderConfig, use_beam: bool,
    scratch_root: str) -> dict[str, Any]:
  """{split: generator or beam PTransform} for `_split_generators`.

  Args:
    name: dataset name (for the log).
    aus: the record AU order (for base rates).
    jobs: split name -> that subject's jobs, in output order.
    process_job: module-level function (picklable) yielding (key, example).
    config: the builder config.
    use_beam: build a Beam PTransform per split (needs apache-beam).
    scratch_root: folder for the workers' temporary files.
  """
  options, encoding = config.face_options(), config.encoding
  if use_beam:
    beam = tfds.core.lazy_imports.apache_beam
    return {split: (beam.Create(split_jobs) | beam.FlatMap(
        _beam_process, process_job, options, encoding))
            for split, split_jobs in jobs.items()}
  stats = BuildStats(name, aus, len(jobs))
  workers = num_workers(len(jobs))
  if workers == 0:
    return {split: _in_process(split_jobs, process_job, options, encoding,
                               stats) for split, split_jobs in jobs.items()}
  scratch = tempfile.mkdtemp(prefix=f'.{name}_frames_', dir=scratch_root)
  # spawn, not fork: a forked child inherits OpenCV's thread pool in a
  # broken state once the parent has run cv2 (seen: Haar detection hangs
  # in every worker). Spawn re-imports the caller's main module, so a
  # calling script needs the usual `if __name__ == '__main__':` guard.
  pool = multiprocessing.get_context('spawn').Pool(workers)
  pending = {
      split: (pool.apply_async(_write_jobs, (
          process_job, split_jobs, options, encoding,
          os.path.join(scratch, f'{split}.pkl'))),
              os.path.join(scratch, f'{split}.pkl'))
      for split, split_jobs in jobs.items()}
  last = list(jobs)[-1]
  return {split: _from_worker(result, path, stats, pool, scratch,
                              split == last)
          for split, (result, path) in pending.items()}


def examples(jobs: Iterable[Any], process_job: ProcessFn,
             config: FaceBuilderConfig) -> Iterator[tuple[str, Example]]:
  """All (key, example) of `jobs`, in this process (counts are dropped)."""
  counts = collections.Counter()
  for job in jobs:
    yield from process_job(job, config.face_options(), config.encoding,
                           counts)


def _in_process(jobs, process_job, options, encoding, stats):
  counts = collections.Counter()
  for job in jobs:
    for key, example in process_job(job, options, encoding, counts):
      stats.add(example)
      yield key, example
  stats.split_done(counts)


def _write_jobs(process_job, jobs, options, encoding, path):
  """Worker: streams a subject's examples to `path`, returns its counts."""
  cv2.setNumThreads(1)  # One core per worker; OpenCV threads would fight.
  counts = collections.Counter()
  with open(path, 'wb') as f:
    for job in jobs:
      for key_example in process_job(job, options, encoding, counts):
        pickle.dump(key_example, f, protocol=pickle.HIGHEST_PROTOCOL)
  return counts


def _from_worker(result, path, stats, pool, scratch, is_last):
  try:
    counts = result.get()  # Re-raises a worker's error (e.g. a bad file).
    with open(path, 'rb') as f:
      while True:
        try:
          key, example = pickle.load(f)
        except EOFError:
          break
        stats.add(example)
        yield key, example
    os.remove(path)
    stats.split_done(counts)
  except BaseException:
    # A failed build stops every worker and leaves no scratch files behind.
    pool.terminate()
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  if is_last:
    pool.close()
    pool.join()
    shutil.rmtree(scratch, ignore_errors=True)


def _beam_process(job, process_job, options, encoding):
  beam = tfds.core.lazy_imports.apache_beam
  counts = collections.Counter()
  yield from process_job(job, options, encoding, counts)
  for key, value in counts.items():
    beam.metrics.Metrics.counter('au_jax', key).inc(value)


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
    """{split name: [job, ...]} found under the manual download."""
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
    return super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return split_generators(
        self.DATASET, self._aus(), self.jobs(str(dl_manager.manual_dir)),
        self.job_function(), self.builder_config,
        getattr(self, '_use_beam', False), str(self._data_dir_root))

  def _generate_examples(self, jobs: list[Any]):
    """One subject's examples in this process (TFDS requires the method;
    `_split_generators` uses the parallel/Beam path above instead)."""
    yield from examples(jobs, self.job_function(), self.builder_config)
