"""Shared machinery of the real-dataset TFDS builders.

Each builder (bp4d, disfa, unbc_mcmaster, fera2017) lists its work as *jobs*
(one image sequence or one video each) grouped by subject split, and gives a
module-level `process_job(job, options, encoding, counts)` that yields
`(key, example)` pairs, built with `frame_example`. This module turns that
into TFDS split generators (`FaceFramesBuilder`, `split_generators`) that run
the jobs

- in-process (`AU_JAX_BUILD_WORKERS=0`),
- in one spawned worker process per subject, at most one per core at a time
  (the default; `build_runners.WorkerRunner`), or
- in an Apache Beam pipeline per split (`build_beam.beam_split`) when the
  caller passes `DownloadConfig(beam_runner=...)` or `beam_options`,

and print a build summary at the end (`build_runners.BuildStats`).

Three modules hold the rest (builders import them directly):

- `frame_reading`: finding, decoding and label-pairing a job's frames,
  named problems and the damaged-frame limit;
- `build_runners`: the worker processes and the summary;
- `build_beam`: the Beam pipeline and its counters.

Landmarks: every record's `landmarks` are the release's where the builder
reads them (au_jax/preprocess/landmarks.py, DATASET_LANDMARKS), else the 68
points dlib fits at build time (face.process_face), else -1; the build
summary counts each ('landmarks_from_dataset', 'landmarks_from_detector',
'landmarks_missing').
"""

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from au_jax.preprocess import face as face_lib
from au_jax.preprocess import video as video_lib
from au_jax.preprocess import build_beam
from au_jax.preprocess import build_runners
from au_jax.preprocess import frame_reading
from au_jax import aus as aus_lib
from au_jax.data import records


@dataclasses.dataclass(eq=False)
class FaceBuilderConfig(tfds.core.BuilderConfig):
  """A builder config: how frames become stored face images.

  Attributes:
    image_size: stored side S (records hold [S, S, 3] uint8).
    mode: 'crop' (face box + margin) or 'aligned' (eye-centre similarity).
    detector: face_lib.FaceOptions.detector ('hog', 'cnn' or 'haar').
    margin: crop margin per side as a share of the face box.
    encoding: 'jpeg' (real frames) or 'png'.
  """
  image_size: int = 256
  mode: str = 'crop'
  detector: str = 'hog'
  margin: float = 0.2
  encoding: str = 'jpeg'

  def face_options(self) -> face_lib.FaceOptions:
    return face_lib.FaceOptions(image_size=self.image_size, mode=self.mode,
                                detector=self.detector, margin=self.margin)


def standard_configs() -> list[FaceBuilderConfig]:
  """crop (default) / aligned at 256 px, and 64 px 'tiny' ones for tests."""
  return [
      FaceBuilderConfig(name='crop', description='Face box (dlib HOG, Haar '
                        'without dlib) + 20% margin, 256x256 JPEG '
                        '(default).'),
      FaceBuilderConfig(name='aligned', mode='aligned', description='Eye-'
                        'centre similarity alignment (eyes from the 68 '
                        'landmarks), 256x256 JPEG.'),
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
                  encoding: str, counts: collections.Counter) -> build_runners.Example:
  """One `records.frame_features` record from a raw frame.

  Args:
    image_bgr: [H, W, 3] uint8 frame as OpenCV reads it.
    landmarks: [68, 2] iBUG-68 frame pixels (-1 absent) or None.
    occurrence: [C] int 1/0/-1; intensity: [C] float, -1 not coded.
    counts: updated with 'frames', 'face_<hog|cnn|haar|landmarks|centre>'
      (how the face was found), 'landmarks_from_<dataset|detector>' or
      'landmarks_missing', 'not_aligned' when aligned mode fell back to a
      crop, and 'blank_frame' for a flat frame (stored with face_found=False,
      landmarks ignored).
  """
  if int(image_bgr.max()) - int(image_bgr.min()) <= BLANK_RANGE:
    counts['blank_frame'] += 1
    landmarks = None
  result = face_lib.process_face(image_bgr, landmarks, options)
  counts['frames'] += 1
  counts[f'face_{result.source}'] += 1
  counts[('landmarks_missing' if result.landmark_source == 'none' else
          f'landmarks_from_{result.landmark_source}')] += 1
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


def split_generators(
    name: str, aus: Sequence[int], jobs: dict[str, list[Any]],
    process_job: build_runners.ProcessFn, config: FaceBuilderConfig, use_beam: bool,
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
    return {split: build_beam.beam_split(name, split, split_jobs, process_job, options,
                              encoding, aus)
            for split, split_jobs in jobs.items()}
  stats = build_runners.BuildStats(name, aus, len(jobs))
  stats.counts.update(listing_counts or {})
  workers = num_workers(len(jobs))
  if workers == 0:
    return {split: _in_process(name, split, split_jobs, process_job, options,
                               encoding, stats)
            for split, split_jobs in jobs.items()}
  runner = build_runners.WorkerRunner(name, jobs, process_job, options, encoding, workers,
                        scratch_root)
  if cleanups is not None:
    cleanups.append(runner.close)
  return {split: runner.examples(split, stats) for split in jobs}


def examples(jobs: Iterable[Any], process_job: build_runners.ProcessFn,
             config: FaceBuilderConfig) -> Iterator[tuple[str, build_runners.Example]]:
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
  frame_reading.check_damaged(name, split, counts)
  stats.split_done(counts)


class FaceFramesBuilder(tfds.core.GeneratorBasedBuilder,
                        skip_registration=True):
  """TFDS plumbing shared by the real-dataset builders.

  A dataset's builder sets DATASET (an aus.DATASET_AUS key), HOMEPAGE and
  MANUAL_DOWNLOAD_INSTRUCTIONS, and its module defines `list_jobs(root)` and
  `process_job(...)` (module-level, so worker processes can unpickle them by
  name), returned by `jobs` and `job_function`.
  """

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'First au_jax release.',
      '1.1.0': 'Faces found by dlib HOG (Haar without dlib); 68 landmarks '
                'fitted by dlib where the release has none; aligned mode '
                'takes the eyes from them.',
  }
  BUILDER_CONFIGS = standard_configs()
  DATASET = ''
  HOMEPAGE = ''

  def jobs(self, manual_dir: str) -> dict[str, list[Any]]:
    """{split name: [job, ...]} found under the manual download.

    Problems found while listing (e.g. a sequence without its label file)
    go to `self.listing_counts` (a Counter; `frame_reading.name_problem`) so the build
    summary names them.
    """
    raise NotImplementedError

  def job_function(self) -> build_runners.ProcessFn:
    """The module-level function that turns one job into examples."""
    raise NotImplementedError

  def _aus(self) -> tuple[int, ...]:
    return aus_lib.DATASET_AUS[self.DATASET]

  def _info(self) -> tfds.core.DatasetInfo:
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
    print(build_beam.summary_from_counters(self.DATASET, self._aus(), pipeline_result,
                                getattr(self, 'listing_counts', None)),
          flush=True)

  def _generate_examples(self, jobs: list[Any]):
    """One subject's examples in this process (TFDS requires the method;
    `_split_generators` uses the parallel/Beam path above instead)."""
    yield from examples(jobs, self.job_function(), self.builder_config)
