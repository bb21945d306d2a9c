"""The table of `au_jax.predict`: its columns, pass 1's spill file, pass 2.

Table (OpenFace 2 conventions, so its analysis scripts read it): `frame`
(1-based), `face_id`, `timestamp` (s), `confidence`, `success`, the face box
`face_x face_y face_width face_height` (frame pixels), then `AUxx_r` (only
for models that predict intensity), `AUxx_c` (0/1 at the run's threshold)
and `AUxx_p` (probability), each block in the run's AU order as OpenFace
groups its _r and _c blocks, then `status` and last `file` (the input, or
for a folder the image the frame came from). Every frame has a row: a frame
without a face, or one that could not be decoded, has `success=0`,
`face_id=-1` and empty box and AU cells; `status` tells them apart (`ok`: a
face, scored; `no_face`: decoded, no face found; `unreadable`: the frame or
image file could not be decoded). `success` keeps OpenFace's meaning (1 =
a face was found), so OpenFace's scripts read the file unchanged.
Landmark columns `x_0..x_67, y_0..y_67` (OpenFace's 2D landmarks, frame
pixels, iBUG-68 order) follow the box: filled where the face detector gives
landmarks (dlib, au_jax/preprocess/landmark_detector.py), empty otherwise
(the Haar fallback, `faces='full_frame'`, frames without a face).

Pass 1 (`Pass1`): faces from consecutive frames fill fixed-size batches
(one compile), the next batch is prepared while the model runs the last,
and raw rows (`raw_dtype`: box, logits, intensity) go to a spill file in
frame order. Pass 2 reads that file per track: optional per-person
calibration, then optional median smoothing (AUNets' post-processing,
`postprocess.median_smooth` per track) in `post_process`, then thresholds
and the CSV in `write_csv`.

Calibration (`--calibrate`, off by default): OpenFace's dynamic models
subtract a person's neutral estimate. Here, per track and AU, the logit at
the track's `calibration_percentile` (10) is taken as that person's neutral
and moved to the logit of `calibration_floor` (probability 0.05): every
frame's logit shifts by the same amount. It assumes each AU is absent in at
least that share of a track's frames; short tracks (< 25 frames) are left
as they are.
"""

import dataclasses
import os
import time
from typing import Any, Sequence

import numpy as np

from au_jax import postprocess
from au_jax.predict import io as predict_io
from au_jax.predict import run as predict_run
from au_jax.predict import tracking

BOX_COLUMNS = ('face_x', 'face_y', 'face_width', 'face_height')
META_COLUMNS = ('frame', 'face_id', 'timestamp', 'confidence', 'success')
LANDMARK_COLUMNS = (tuple(f'x_{i}' for i in range(68))
                    + tuple(f'y_{i}' for i in range(68)))
# `status` values; the spill file stores the index.
STATUSES = ('ok', 'no_face', 'unreadable')
_MIN_CALIBRATION_FRAMES = 25


def au_columns(aus: Sequence[int], intensity: bool = False) -> list[str]:
  """`AUxx_r` (if intensity), `AUxx_c`, `AUxx_p` blocks in `aus` order."""
  suffixes = ('r', 'c', 'p') if intensity else ('c', 'p')
  return [f'AU{au:02d}_{s}' for s in suffixes for au in aus]


def columns(aus: Sequence[int], intensity: bool = False,
            landmarks: bool = False) -> list[str]:
  """Every column of a predict table, in order (module doc)."""
  return (list(META_COLUMNS) + list(BOX_COLUMNS)
          + (list(LANDMARK_COLUMNS) if landmarks else [])
          + au_columns(aus, intensity) + ['status', 'file'])


def raw_dtype(num_aus: int) -> np.dtype:
  return np.dtype([('frame', '<i4'), ('face_id', '<i4'),
                   ('timestamp', '<f8'), ('confidence', '<f4'),
                   ('success', 'i1'), ('status', 'i1'),
                   ('box', '<f4', (4,)),
                   ('landmarks', '<f4', (68, 2)),  # nan: none found.
                   ('logits', '<f4', (num_aus,)),
                   ('intensity', '<f4', (num_aus,))])


@dataclasses.dataclass
class _PendingFrame:
  frame: predict_io.Frame
  faces: list[tracking.Face]
  logits: np.ndarray  # [F, C], filled when the face's batch returns.
  intensity: np.ndarray
  waiting: int


class Pass1:
  """Frames -> raw rows in a spill file, batching faces across frames."""

  def __init__(self, run: predict_run.Run, options: Any, spill,
               timings):
    self.run, self.options = run, options
    self.spill, self.timings = spill, timings
    self.dtype = raw_dtype(len(run.aus))
    self.pending: list[_PendingFrame] = []
    self.faces: list[np.ndarray] = []
    self.flows: list[np.ndarray] = []  # With config.flow (AUNets).
    self.owners: list[tuple[_PendingFrame, int]] = []
    self.in_flight = None
    self.rows = 0

  def add(self, frame: predict_io.Frame, faces: list[tracking.Face],
          crops: list[np.ndarray],
          flows: list[np.ndarray] | None = None) -> None:
    num_aus = len(self.run.aus)
    entry = _PendingFrame(frame, faces, np.zeros((len(faces), num_aus),
                                                 np.float32),
                          np.zeros((len(faces), num_aus), np.float32),
                          len(faces))
    self.pending.append(entry)
    for k, crop in enumerate(crops):
      self.faces.append(crop)
      if flows is not None:
        self.flows.append(flows[k])
      self.owners.append((entry, k))
      if len(self.faces) == self.options.batch_size:
        self._dispatch()
    self._flush()

  def finish(self) -> None:
    if self.faces:
      self._dispatch()
    self._collect()
    self._flush()

  def _dispatch(self) -> None:
    start = time.perf_counter()
    batch = predict_run.prepare_model_input(
        self.faces, self.run.config, self.flows if self.flows else None)
    self.timings['crop_normalise'] += time.perf_counter() - start
    start = time.perf_counter()
    size = self.options.batch_size
    count = len(self.faces)
    batch = {k: np.pad(v, [(0, size - count)] + [(0, 0)] * (v.ndim - 1))
             for k, v in batch.items()}
    outputs = self.run.apply_fn(self.run.variables, batch)
    self.timings['model'] += time.perf_counter() - start
    # The previous batch is read only now, so the model ran it while this
    # batch's faces were being found and cut.
    self._collect()
    self.in_flight = (outputs, self.owners)
    self.faces, self.flows, self.owners = [], [], []

  def _collect(self) -> None:
    if self.in_flight is None:
      return
    start = time.perf_counter()
    (logits, intensity), owners = self.in_flight
    logits, intensity = np.asarray(logits), np.asarray(intensity)
    for row, (entry, k) in enumerate(owners):
      entry.logits[k] = logits[row]
      entry.intensity[k] = intensity[row]
      entry.waiting -= 1
    self.in_flight = None
    self.timings['model'] += time.perf_counter() - start

  def _flush(self) -> None:
    """Writes the leading frames whose faces all have outputs."""
    done = 0
    while done < len(self.pending) and self.pending[done].waiting == 0:
      done += 1
    if not done:
      return
    start = time.perf_counter()
    rows = []
    no_points = np.full((68, 2), np.nan, np.float32)
    for entry in self.pending[:done]:
      frame = entry.frame
      if not entry.faces:
        status = STATUSES.index('no_face' if frame.error is None
                                else 'unreadable')
        rows.append((frame.index, -1, frame.timestamp, 0.0, 0, status,
                     np.full(4, np.nan), no_points,
                     np.full(len(self.run.aus), np.nan),
                     np.full(len(self.run.aus), np.nan)))
      for k, found in enumerate(entry.faces):
        rows.append((frame.index, found.face_id, frame.timestamp,
                     found.confidence, 1, STATUSES.index('ok'), found.box,
                     no_points if found.landmarks is None
                     else found.landmarks, entry.logits[k],
                     entry.intensity[k]))
    np.array(rows, self.dtype).tofile(self.spill)
    self.rows += len(rows)
    del self.pending[:done]
    self.timings['write'] += time.perf_counter() - start


def _logit(p: float) -> float:
  return float(np.log(p / (1 - p)))


def post_process(raw: np.ndarray, run: predict_run.Run, options: Any,
                 windows: np.ndarray, directory: str) -> np.ndarray:
  """[N, C] probabilities after calibration and smoothing, on disk.

  Work is per track (a person's rows in frame order), so memory holds one
  track's [T, C] values at a time.
  """
  num_aus = len(run.aus)
  probabilities = np.lib.format.open_memmap(
      os.path.join(directory, 'probabilities.npy'), mode='w+',
      dtype=np.float32, shape=(len(raw), num_aus))
  chunk = 65536
  for start in range(0, len(raw), chunk):
    logits = raw['logits'][start:start + chunk]
    probabilities[start:start + chunk] = 1 / (1 + np.exp(-logits))
  if not options.calibrate and windows.max() <= 1:
    return probabilities
  face_ids = np.asarray(raw['face_id'])
  order = np.argsort(face_ids, kind='stable')  # Frame order within a track.
  ids, starts = np.unique(face_ids[order], return_index=True)
  for face_id, rows in zip(ids, np.split(order, starts[1:])):
    if face_id < 0:
      continue
    logits = np.asarray(raw['logits'][rows], np.float32)
    if options.calibrate and len(rows) >= _MIN_CALIBRATION_FRAMES:
      baseline = np.percentile(logits, options.calibration_percentile,
                               axis=0)
      logits = logits - baseline + _logit(options.calibration_floor)
    values = 1 / (1 + np.exp(-logits))
    for window in np.unique(windows):
      if window > 1:
        columns_ = windows == window
        values[:, columns_] = postprocess.median_smooth(
            values[:, columns_], np.zeros(len(rows)), int(window))
    probabilities[rows] = values
  return probabilities


def write_csv(path: str, spec: predict_io.InputSpec, raw: np.ndarray,
              probabilities: np.ndarray, run: predict_run.Run) -> int:
  writer = predict_io.CsvWriter(
      path, columns(run.aus, run.intensity, landmarks=True))
  try:
    chunk = 4096
    for start in range(0, len(raw), chunk):
      part = raw[start:start + chunk]
      probs = np.asarray(probabilities[start:start + chunk])
      present = (probs >= run.thresholds).astype(np.int64)
      rows = []
      for k, record in enumerate(part):
        frame = int(record['frame'])
        file = (spec.files[frame - 1] if spec.kind == 'folder' else
                spec.path)  # A video, an image or ARRAY_NAME.
        meta = [frame, int(record['face_id']), float(record['timestamp']),
                float(record['confidence']), int(record['success'])]
        points = record['landmarks']
        # OpenFace's x_0..x_67 then y_0..y_67; empty without landmarks.
        landmarks = ([None] * 136
                     if np.isnan(points).any() or (points < 0).all() else
                     [float(v) for v in points[:, 0]]
                     + [float(v) for v in points[:, 1]])
        if record['success']:
          box = [float(v) for v in record['box']]
          values = ([float(v) for v in record['intensity']]
                    if run.intensity else [])
          values += [int(v) for v in present[k]]
          values += [float(v) for v in probs[k]]
        else:
          box = [None] * 4
          values = [None] * len(au_columns(run.aus, run.intensity))
        rows.append(meta + box + landmarks + values
                    + [STATUSES[int(record['status'])], file])
      writer.write(rows)
  except BaseException:
    writer.close(keep=False)
    raise
  writer.close()
  return writer.rows
