"""Plain-Python API: render subjects into frame records (no TFDS needed).

  records = render_subject(config.get('tiny'), 0)

Every subject has its own seeds (identity from config.IDENTITY_SEED, videos
from the config's seed), so a subject's records do not depend on which
process renders it or in which order: `render_subjects` spreads subjects over
a process pool and hands them back in subject order.
"""

from concurrent import futures
from concurrent.futures import process
import multiprocessing
import os
import sys
from typing import Iterator, Sequence

import cv2
import numpy as np

from data_builders.synthetic_au import au_effects
from data_builders.synthetic_au import config as config_lib
from data_builders.synthetic_au import episodes
from data_builders.synthetic_au import face_geometry
from data_builders.synthetic_au import render

SynthConfig = config_lib.SynthConfig


def identity(subject_index: int,
             config: SynthConfig | None = None) -> face_geometry.Identity:
  """The person behind subject `subject_index` of `config`.

  The same in every config that keeps the default identity seed and skin
  range (None = those defaults): tiny, default and multiview.
  """
  if config is None:
    return face_geometry.sample_identity(subject_index,
                                         config_lib.IDENTITY_SEED)
  return face_geometry.sample_identity(subject_index, config.identity_seed,
                                       tuple(config.skin_tone_range))


def subject_timelines(config: SynthConfig,
                      subject_index: int) -> list[episodes.Timeline]:
  """Labels of every video of one subject, without rendering (cheap)."""
  return [episodes.video_timeline([config.seed, subject_index, video],
                                  config.frames_per_video)
          for video in range(config.videos_per_subject)]


def _head_motion(rng: np.random.Generator, config: SynthConfig,
                 view: tuple[float, float]) -> list[face_geometry.Pose]:
  """Smooth small head motion around a view, in drawing-canvas pixels."""
  size = config.image_size * render.SUPERSAMPLE
  t = config.frames_per_video
  yaw = view[0] + rng.uniform(-3, 3) + episodes.smooth_series(rng, t, 3.0)
  pitch = view[1] + rng.uniform(-3, 3) + episodes.smooth_series(rng, t, 2.5)
  roll = rng.uniform(-3, 3) + episodes.smooth_series(rng, t, 2.5)
  scale = size * 0.35 * rng.uniform(0.95, 1.05) * (
      1.0 + episodes.smooth_series(rng, t, 0.02))
  centre_x = size * (0.5 + rng.uniform(-0.02, 0.02)
                     + episodes.smooth_series(rng, t, 0.012))
  centre_y = size * (0.45 + rng.uniform(-0.02, 0.02)
                     + episodes.smooth_series(rng, t, 0.012))
  return [face_geometry.Pose(*(float(v[i]) for v in
                               (yaw, pitch, roll, centre_x, centre_y, scale)))
          for i in range(t)]


def _video_turn(config: SynthConfig, subject_index: int,
                video: int) -> tuple[float, float]:
  """(yaw, pitch) degrees a video's head is turned by (config.pose_range).

  Drawn from a stream of its own, so configs without a pose range (all
  zero) draw nothing and render exactly as before the knob existed.
  """
  yaw_range, pitch_range = config.pose_range
  if not yaw_range and not pitch_range:
    return (0.0, 0.0)
  rng = np.random.default_rng([config.seed, subject_index, video, 3])
  return (float(rng.uniform(-yaw_range, yaw_range)),
          float(rng.uniform(-pitch_range, pitch_range)))


def _encode_png(image: np.ndarray) -> bytes:
  ok, png = cv2.imencode('.png', image[..., ::-1])
  if not ok:
    raise RuntimeError('OpenCV could not PNG-encode a synthetic frame.')
  return png.tobytes()


def render_subject(config: SynthConfig, subject_index: int,
                   encode: bool = True, images: bool = True) -> list[dict]:
  """All frame records of one subject, in (video, view, frame) order.

  Args:
    config: sizes (config_lib.CONFIGS).
    subject_index: 0-based; the split is `config_lib.subject_id(index)`.
    encode: PNG bytes in 'image' (what the TFDS builder stores); False keeps
      the [S, S, 3] uint8 array.
    images: False skips drawing ('image' is None; landmarks and labels are
      the same as with images): for fast label/geometry statistics.

  Returns:
    dicts with the fields of `au_jax.data.records.frame_features` plus 'key'.
  """
  person = identity(subject_index, config)
  subject = config_lib.subject_id(subject_index)
  views = (tuple(enumerate(config_lib.VIEWS, start=1)) if config.multiview
           else ((0, (0.0, 0.0)),))
  records = []
  for video, timeline in enumerate(subject_timelines(config, subject_index)):
    rng = np.random.default_rng([config.seed, subject_index, video, 1])
    look = render.sample_look(rng, config.image_size, config.lighting)
    motion = _head_motion(rng, config, _video_turn(config, subject_index,
                                                   video))
    sequence = f'{subject}_T{video + 1}'
    for view, (yaw, pitch) in views:
      frame_rng = np.random.default_rng(
          [config.seed, subject_index, video, 2, view])
      for frame in range(config.frames_per_video):
        pose = motion[frame]
        pose = face_geometry.Pose(pose.yaw + yaw, pose.pitch + pitch,
                                  pose.roll, pose.centre_x, pose.centre_y,
                                  pose.scale)
        landmarks = au_effects.deform(person, timeline.intensity[frame],
                                      timeline.unilateral[frame])
        cues = au_effects.cue_strengths(person, timeline.intensity[frame],
                                        timeline.unilateral[frame])
        if images:
          image, points = render.render_frame(
              person, landmarks, cues, pose, look, frame_rng,
              config.image_size)
        else:
          image, points = None, render.image_landmarks(landmarks, pose)
        occurrence, coded = timeline.occurrence[frame], timeline.coded[frame]
        if not config.au_labels:  # identity data: AUs not coded
          occurrence = np.full_like(occurrence, -1)
          coded = np.full_like(coded, -1.0)
        records.append({
            'key': f'{sequence}_V{view}_{frame:04d}',
            'image': _encode_png(image) if encode and images else image,
            'au_occurrence': occurrence,
            'au_intensity': coded,
            'landmarks': points,
            'face_found': True,
            'subject': subject,
            'sequence': sequence,
            'frame_index': np.int32(frame),
            'view': np.int32(view),
            'emotion': np.int32(timeline.emotion[frame]),
            'identity': np.int32(subject_index),
        })
  return records


def _render_job(job: tuple[SynthConfig, int]) -> list[dict]:
  cv2.setNumThreads(1)  # one subject per process; no nested threads
  # Test hook (tests/test_build_faults.py): '<subject>:kill' kills this
  # subject's worker as the out-of-memory killer would. Never set otherwise.
  if os.environ.get('_AU_JAX_TEST_BUILD_FAULT') == (
      f'{config_lib.subject_id(job[1])}:kill'):
    os.kill(os.getpid(), 9)
  return render_subject(*job)


def default_workers() -> int:
  """$AU_JAX_SYNTH_WORKERS, else one process per core (0 = in-process)."""
  value = os.environ.get('AU_JAX_SYNTH_WORKERS')
  if value is not None:
    return int(value)
  return os.cpu_count() or 1


def _start_method() -> str:
  """'fork' (fast, no re-import of the caller's script) unless JAX is loaded:
  forking a process that runs JAX threads can deadlock, so then 'spawn'
  (whose children re-import the caller's main module: guard it)."""
  if 'jax' in sys.modules or 'fork' not in (
      multiprocessing.get_all_start_methods()):
    return 'spawn'
  return 'fork'


def render_subjects(config: SynthConfig, subject_indices: Sequence[int],
                    workers: int | None = None
                    ) -> Iterator[tuple[int, list[dict]]]:
  """Yields (subject_index, records) in the given order.

  Subjects are rendered by `workers` spawned processes (results are the same
  for any worker count, since every subject has its own seeds).
  """
  workers = default_workers() if workers is None else workers
  jobs = [(config, int(i)) for i in subject_indices]
  if workers <= 1 or len(jobs) <= 1:
    for job in jobs:
      yield job[1], render_subject(*job)
    return
  # ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies (out
  # of memory, killed, or a spawned child that cannot re-import the main
  # module) breaks the executor, which then fails every pending subject;
  # a Pool replaces the dead worker and waits forever for its result.
  pool = futures.ProcessPoolExecutor(
      min(workers, len(jobs)), mp_context=multiprocessing.get_context(
          _start_method()))
  try:
    pending = [pool.submit(_render_job, job) for job in jobs]
    for job, future in zip(jobs, pending):
      try:
        records = future.result()
      except process.BrokenProcessPool as e:
        waiting = [config_lib.subject_id(j[1]) for j, f in zip(jobs, pending)
                   if not f.done() or f.exception() is not None]
        raise RuntimeError(
            f'synthetic_au: a render worker died (killed, out of memory, or '
            f'a spawned worker could not re-import the main module: build '
            f'from a saved script with an `if __name__ == "__main__":` guard,'
            f' or set AU_JAX_SYNTH_WORKERS=0) while subject(s) '
            f'{", ".join(waiting)} were unfinished; nothing was written.'
        ) from e
      yield job[1], records
  finally:
    pool.shutdown(wait=False, cancel_futures=True)


def label_statistics(occurrence: np.ndarray) -> dict[str, np.ndarray]:
  """Base rates and the all-positive F1 floor of frame labels.

  Args:
    occurrence: [N, C] int 1/0/-1 (unknown labels are left out).

  Returns:
    'base_rate' [C] share of known labels that are 1; 'all_positive_f1' [C]
    F1 of predicting 1 everywhere (precision = base rate, recall = 1:
    2 p / (1 + p)); 'unknown' [C] share of labels that are -1.
  """
  occurrence = np.asarray(occurrence)
  known = (occurrence >= 0).sum(0)
  rate = (occurrence == 1).sum(0) / np.maximum(known, 1)
  return {'base_rate': rate, 'all_positive_f1': 2 * rate / (1 + rate),
          'unknown': (occurrence < 0).mean(0)}
