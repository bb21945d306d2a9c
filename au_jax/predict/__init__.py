r"""Videos and images -> per-frame AU tables with any trained au_jax run.

  python -m au_jax.predict --checkpoint=workdir/synthetic_au/drml/fold_1 \
      --input=clip.mp4 --input=photos/ --output_dir=out [--smooth=7] \
      [--calibrate] [--plot] [--annotate] [--faces=detect|full_frame]

or from Python: `au_jax.predict.predict(['clip.mp4'], checkpoint)` returns
the same table as a pandas DataFrame. Each input (a video, an image, or a
folder of images taken as the frames of one sequence) gives `<stem>.csv`.

This module is the Python API (`predict`, `predict_file`, `predict_many`,
`Options`); `python -m au_jax.predict` is `__main__.py`; the parts live in:
- `au_jax.predict.run`: a run directory -> `predict_run.Run` (`predict_run.load_run`: config,
  weights, per-AU thresholds and median windows, the dataset's face crop;
  per-AU runs joined into one model) and `predict_run.prepare_model_input`.
- `au_jax.predict.table`: the table's predict_table.columns (OpenFace 2 conventions), the
  spill file of raw rows (pass 1), per-track calibration (`--calibrate`)
  and median smoothing, thresholds and the CSV (pass 2).
- `au_jax.predict.io`: inputs and decoding, the CSV writer, plot and
  annotated copies; `au_jax.predict.tracking`: face detection and tracking.
Their public names (`predict_run.load_run`, `predict_table.columns`, `predict_table.BOX_COLUMNS`, ...) are also
importable from here.

How a frame becomes rows (pass 1, streaming): a background thread decodes
frames; `tracking.FaceTracker` finds faces (full Haar scan every few frames,
local re-detection in between) and keeps ids by box overlap; each face is
warped as the dataset builder stored faces, then `predict_run.prepare_model_input`
applies the evaluation transforms; faces from consecutive frames fill
fixed-size batches (one compile) and the next batch is prepared while the
model runs the last. Runs trained with optical flow (AUNets' flow and
fusion variants) get each face's flow image to its next frame in the same
track, paired as the input pipeline pairs records (`_FlowFrames`). Raw rows
(box, logits) go to a temporary file.
Pass 2 reads that file per track: optional per-person calibration, then
optional median smoothing (AUNets' post-processing,
`postprocess.median_smooth` per track), then thresholds and the CSV. Memory
does not grow with video length (measured in
benchmarks/predict_throughput.py).
"""

import dataclasses
import os
import tempfile
import time
from typing import Any, Sequence

from absl import logging
import cv2
import numpy as np

from au_jax.predict import io as predict_io
from au_jax.predict import run as predict_run
from au_jax.predict import table as predict_table
from au_jax.predict import tracking
from au_jax.preprocess import face as face_lib
from au_jax.preprocess import flow as flow_lib
import pandas as pd

@dataclasses.dataclass
class Options:
  """How predict runs (the CLI flags).

  Attributes:
    faces: 'detect' (Haar + tracking) or 'full_frame' (the frame's central
      square is the face: for inputs that are face crops already, e.g.
      synthetic_au frames).
    smooth: median window (odd); None = the run's tuned window, 1 = off.
    calibrate: per-track baseline shift (au_jax/predict/table.py doc).
    calibration_percentile, calibration_floor: its parameters.
    batch_size: faces per model call (padded; one compile).
    tracker: detection/tracking options.
    plot, annotate: also write `<stem>_aus.png` / annotated copies.
  """
  faces: str = 'detect'
  smooth: int | None = None
  calibrate: bool = False
  calibration_percentile: float = 10.0
  calibration_floor: float = 0.05
  batch_size: int = 32
  tracker: tracking.TrackerOptions = tracking.TrackerOptions()
  plot: bool = False
  annotate: bool = False

  def __post_init__(self):
    if self.faces not in ('detect', 'full_frame'):
      raise ValueError(f"faces must be 'detect' or 'full_frame', got "
                       f'{self.faces!r}.')
    if self.smooth is not None and (self.smooth < 1 or self.smooth % 2 == 0):
      raise ValueError(f'smooth must be an odd window >= 1, got '
                       f'{self.smooth}.')
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}.')


def _cut_faces(image: np.ndarray, faces: list[tracking.Face],
               options: face_lib.FaceOptions) -> list[np.ndarray]:
  crops = []
  for found in faces:
    matrix = tracking.face_matrix(image, found.box, options)
    crop = tracking.warp_face(image, matrix, options.image_size)
    crops.append(np.ascontiguousarray(crop[..., ::-1]))  # BGR -> RGB
  return crops


def _full_frame_face(image: np.ndarray, size: int
                     ) -> tuple[tracking.Face, np.ndarray]:
  height, width = image.shape[:2]
  side = min(height, width)
  box = np.array([(width - side) / 2, (height - side) / 2, side, side])
  matrix = face_lib.crop_matrix(box, size, 0.0)
  crop = tracking.warp_face(image, matrix, size)
  return (tracking.Face(0, box, 1.0),
          np.ascontiguousarray(crop[..., ::-1]))


class _FlowFrames:
  """AUNets' flow image for every face (runs with config.flow), as the
  input pipeline pairs records (preprocess/flow.neighbour_pairs): from a
  face's crop to the same face's crop in the next frame; at a track's last
  frame (or before a gap) the flow into it from the previous frame; a face
  seen in one frame only gets the zero-motion image. Frames reach `pass1`
  one frame late, when their next frame is known."""

  def __init__(self, pass1: predict_table.Pass1, config, timings):
    self.pass1, self.timings = pass1, timings
    self.method = config.get('flow_method') or 'dis'
    self.size = config.resize_size  # As the input pipeline's flow_size.
    self.held = None  # (frame, faces, crops) waiting for the next frame.
    self.before: dict[int, np.ndarray] = {}  # face id -> previous crop.

  def add(self, frame, faces, crops) -> None:
    if self.held is not None:
      self._release({f.face_id: c for f, c in zip(faces, crops)})
    self.held = (frame, faces, crops)

  def finish(self) -> None:
    if self.held is not None:
      self._release({})
      self.held = None
    self.pass1.finish()

  def _release(self, following: dict[int, np.ndarray]) -> None:
    frame, faces, crops = self.held
    start = time.perf_counter()
    flows = []
    for face, crop in zip(faces, crops):
      if face.face_id in following:
        pair = (crop, following[face.face_id])
      elif face.face_id in self.before:
        pair = (self.before[face.face_id], crop)
      else:
        pair = (crop, None)
      flows.append(flow_lib.flow_image(*pair, method=self.method,
                                       size=self.size))
    self.timings['flow'] += time.perf_counter() - start
    self.before = {f.face_id: c for f, c in zip(faces, crops)}
    self.pass1.add(frame, faces, crops, flows)


@dataclasses.dataclass
class Result:
  """What predicting one input produced.

  Attributes:
    input: the input path.
    csv: the CSV written.
    frames: frames read (rows with a face or not); unreadable: frames that
      could not be decoded (counted in `frames`, success=0).
    rows: CSV rows; faces: rows with a face; tracks: distinct face ids.
    seconds: per stage ('decode' runs in its own thread, in parallel) and
      'total' wall time.
    extra: other files written (plot, annotated copies).
  """
  input: str
  csv: str
  frames: int
  unreadable: int
  rows: int
  faces: int
  tracks: int
  seconds: dict[str, float]
  extra: list[str]


def predict_file(path: str, run: predict_run.Run, output_dir: str,
                 options: Options = Options()) -> Result:
  """Predicts one input (video, image or folder) into `<stem>.csv`.

  Raises:
    ValueError naming the input when it is missing, empty or unreadable.
  """
  start_total = time.perf_counter()
  spec = predict_io.expand_input(path)
  os.makedirs(output_dir, exist_ok=True)
  timings = {k: 0.0 for k in ('decode', 'wait_decode', 'detect_track',
                              'crop_normalise', 'flow', 'model', 'write')}
  reader = predict_io.FrameReader(spec)
  tracker = tracking.FaceTracker(options.tracker)
  windows = (run.median_windows if options.smooth is None else
             np.full(len(run.aus), options.smooth))
  with tempfile.TemporaryDirectory(dir=output_dir,
                                   prefix=f'.{spec.stem}_') as scratch:
    spill_path = os.path.join(scratch, 'raw.bin')
    with open(spill_path, 'wb') as spill:
      pass1 = predict_table.Pass1(run, options, spill, timings)
      # Flow runs (AUNets) hold each frame until the next one is cut.
      sink = (_FlowFrames(pass1, run.config, timings)
              if run.config.get('flow') else pass1)
      frames = 0
      iterator = iter(reader)
      while True:
        start = time.perf_counter()
        frame = next(iterator, None)
        timings['wait_decode'] += time.perf_counter() - start
        if frame is None:
          break
        frames += 1
        faces, crops = [], []
        if frame.image is not None:
          start = time.perf_counter()
          if options.faces == 'full_frame':
            found, crop = _full_frame_face(frame.image,
                                           run.face_options.image_size)
            faces, crops = [found], [crop]
            timings['crop_normalise'] += time.perf_counter() - start
          else:
            faces = tracker.update(frame.image)
            timings['detect_track'] += time.perf_counter() - start
            start = time.perf_counter()
            crops = _cut_faces(frame.image, faces, run.face_options)
            timings['crop_normalise'] += time.perf_counter() - start
        sink.add(frame, faces, crops)
      sink.finish()
    timings['decode'] = reader.decode_seconds
    if not frames:
      raise ValueError(f'Input {path}: no frame could be decoded.')
    raw = np.memmap(spill_path, dtype=pass1.dtype, mode='r')
    start = time.perf_counter()
    probabilities = predict_table.post_process(raw, run, options, windows,
                                               scratch)
    csv_path = os.path.join(output_dir, f'{spec.stem}.csv')
    rows = predict_table.write_csv(csv_path, spec, raw, probabilities, run)
    timings['write'] += time.perf_counter() - start
    success = np.asarray(raw['success']) > 0
    faces_count = int(success.sum())
    tracks = len(np.unique(np.asarray(raw['face_id'])[success]))
    del raw, probabilities  # Close the memory maps before the folder goes.
  extra = []
  if options.plot:
    png = predict_io.plot_tracks(
        csv_path, os.path.join(output_dir, f'{spec.stem}_aus.png'), run.aus)
    extra += [png] if png else []
  if options.annotate:
    extra += predict_io.annotate(spec, csv_path, output_dir, run.aus)
  if reader.unreadable:
    logging.warning('%s: %d frame(s) could not be decoded (rows kept with '
                    'success=0).', path, reader.unreadable)
  if frames and not faces_count:
    logging.warning('%s: no face found in %d frame(s).', path, frames)
  timings['total'] = time.perf_counter() - start_total
  return Result(input=path, csv=csv_path, frames=frames,
                unreadable=reader.unreadable, rows=rows, faces=faces_count,
                tracks=tracks, seconds=timings, extra=extra)


def predict_many(inputs: Sequence[str], run: predict_run.Run, output_dir: str,
                 options: Options = Options()
                 ) -> tuple[list[Result], dict[str, str]]:
  """Every input in turn; a failing input is reported, the others run.

  Returns:
    results of the inputs that worked, {input: one-line error} of the rest.
  """
  results, errors = [], {}
  for path in inputs:
    try:
      results.append(predict_file(path, run, output_dir, options))
    except (ValueError, OSError, cv2.error) as error:
      errors[path] = str(error).splitlines()[0] if str(error) else repr(error)
  return results, errors


def predict(inputs: str | Sequence[str], checkpoint: str,
            output_dir: str | None = None, **options: Any):
  """Predicts AUs on videos/images and returns the table as a DataFrame.

  Args:
    inputs: a path or paths (video, image or folder of images).
    checkpoint: a run directory (with config.json and checkpoints/).
    output_dir: where the CSVs (and plots) go; default a temporary folder
      that is removed afterwards.
    **options: fields of `Options` (faces, smooth, calibrate, batch_size,
      tracker, plot, annotate).

  Returns:
    pandas.DataFrame with `predict_table.columns(aus)` (the CSV of each input, in input
    order; `frame` restarts at 1 per input, `file` tells them apart). Inputs
    that failed are in `.attrs['errors']` ({path: message}), the per-input
    `Result`s in `.attrs['results']`.

  Raises:
    ValueError: the checkpoint directory is not a finished run.
  """
  if isinstance(inputs, str):
    inputs = [inputs]
  run = predict_run.load_run(checkpoint)
  config = Options(**options)
  with tempfile.TemporaryDirectory() as scratch:
    results, errors = predict_many(inputs, run, output_dir or scratch, config)
    tables = [pd.read_csv(r.csv, keep_default_na=True) for r in results]
  table = (pd.concat(tables, ignore_index=True) if tables else
           pd.DataFrame(columns=predict_table.columns(run.aus, run.intensity)))
  table.attrs['errors'] = errors
  table.attrs['results'] = results
  return table
