r"""Videos, images and frames -> per-frame AU tables with any trained run.

  python -m au_jax.predict --checkpoint=workdir/synthetic_au/drml/fold_1 \
      --input=clip.mp4 --input=photos/ --output_dir=out [--smooth=7] \
      [--calibrate] [--plot] [--annotate] [--faces=detect|full_frame] \
      [--overwrite] [--verbose]

or from Python, the same table as a pandas DataFrame:

  from au_jax import predict
  table = predict.predict('clip.mp4', checkpoint)          # a path
  table = predict.predict(['a/clip.mp4', 'b/'], checkpoint)  # paths
  table = predict.predict(rgb, checkpoint)    # [H, W, 3] uint8 RGB image
  table = predict.predict(frames, checkpoint)  # list/iterator of such
                                               # frames: one sequence

Each input (a video, an image, a folder of images taken as the frames of
one sequence, or frames given as arrays) gives one table: one row per face
per frame, and one row for a frame without a face. The DataFrame adds a
first column `input` (the input as given; 'array' for arrays) to the
columns of `au_jax.predict.table` (OpenFace 2 names): `frame`, `face_id`,
..., `status` ('ok', 'no_face', 'unreadable') and `file`. With an
`output_dir` each input also gets a CSV, named by the rule of
`au_jax.predict.io` (its path relative to the folder holding all inputs,
extension -> `.csv`; `array.csv` for arrays); outputs that would collide,
or exist (unless overwrite=True), are refused before anything is written.

A file that cannot be decoded (a zero-byte or corrupt image, a video frame)
keeps its row with `status='unreadable'` and has a one-line reason in
`.attrs['errors']` ({path: reason}, with the inputs that failed entirely);
entries of a folder that are not images are named in `.attrs['skipped']`.
The CLI prints each as `predict: <path>: <reason>` on stderr.

Keyword arguments of `predict` are the fields of `Options`
(`faces='full_frame'` for inputs that are face crops, `smooth`,
`overwrite=True`, `progress=True` for a bar over each video's, folder's or
sequence's frames on stderr: off from Python unless asked; the CLI shows
it when stderr is a terminal).

This module is the Python API (`predict`, `predict_file`, `predict_many`,
`Options`, `Result`); `python -m au_jax.predict` is `__main__.py`; the parts
live in:
- `au_jax.predict.run`: a run directory -> `Run` (`load_run`: config,
  weights, per-AU thresholds and median windows, the dataset's face crop;
  per-AU runs joined into one model) and `prepare_model_input`.
- `au_jax.predict.table`: the table's columns (OpenFace 2 conventions), the
  spill file of raw rows (pass 1), per-track calibration (`--calibrate`)
  and median smoothing, thresholds and the CSV (pass 2).
- `au_jax.predict.io`: inputs, output names and decoding, the CSV writer,
  plot and annotated copies; `au_jax.predict.tracking`: face detection and
  tracking.

How a frame becomes rows (pass 1, streaming): a background thread decodes
frames; `tracking.FaceTracker` finds faces (full Haar scan every few frames,
local re-detection in between) and keeps ids by box overlap; each face is
warped as the dataset builder stored faces, then `run.prepare_model_input`
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
import itertools
import os
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Sequence

from absl import logging
import cv2
import numpy as np
import pandas as pd
import tqdm

from au_jax.predict import io as predict_io
from au_jax.predict import run as predict_run
from au_jax.predict import table as predict_table
from au_jax.predict import tracking
from au_jax.preprocess import face as face_lib
from au_jax.preprocess import flow as flow_lib


@dataclasses.dataclass
class Options:
  """How predict runs (the CLI flags).

  Attributes:
    faces: 'detect' (Haar + tracking) or 'full_frame' (the frame's central
      square is the face: for inputs that are face crops already, e.g.
      synthetic_au frames).
    smooth: median window (even windows as postprocess.median_smooth);
      None = the run's tuned window, 1 = off.
    calibrate: per-track baseline shift (au_jax/predict/table.py doc).
    calibration_percentile, calibration_floor: its parameters.
    batch_size: faces per model call (padded; one compile).
    tracker: detection/tracking options.
    plot, annotate: also write `<name>_aus.png` / annotated copies.
    overwrite: replace outputs that exist (else they are refused).
    progress: a progress bar over the frames of each sequence (video,
      folder, arrays) on stderr.
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
  overwrite: bool = False
  progress: bool = False

  def __post_init__(self):
    if self.faces not in ('detect', 'full_frame'):
      raise ValueError(f"faces must be 'detect' or 'full_frame', got "
                       f'{self.faces!r}.')
    if self.smooth is not None and self.smooth < 1:
      raise ValueError(f'smooth must be a window >= 1, got {self.smooth}.')
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}.')


def _cut_faces(image: np.ndarray, faces: list[tracking.Face],
               options: face_lib.FaceOptions) -> list[np.ndarray]:
  crops = []
  for found in faces:
    matrix = tracking.face_matrix(image, found.box, options, found.landmarks)
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
    input: the input path (`predict_io.ARRAY_NAME` for arrays).
    csv: the CSV written.
    frames: frames read (rows with a face or not); unreadable: frames that
      could not be decoded (counted in `frames`, status 'unreadable').
    rows: CSV rows; faces: rows with a face; tracks: distinct face ids.
    seconds: per stage ('decode' runs in its own thread, in parallel) and
      'total' wall time.
    extra: other files written (plot, annotated copies).
    problems: {file: one-line reason} for what could not be decoded (an
      image of a folder, or the video with its frame numbers).
    skipped: a folder's entries that are not images.
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
  problems: dict[str, str] = dataclasses.field(default_factory=dict)
  skipped: tuple[str, ...] = ()


def _problems(spec: predict_io.InputSpec,
              unreadable: Sequence[tuple[str, int, str]]) -> dict[str, str]:
  """{file: 'unreadable: <reason>'}; a video's frames on one line."""
  if spec.kind != 'video':
    return {file: f'unreadable: {reason}' for file, _, reason in unreadable}
  if not unreadable:
    return {}
  frames = [str(index) for _, index, _ in unreadable]
  shown = ', '.join(frames[:20]) + (', ...' if len(frames) > 20 else '')
  return {spec.path: f'unreadable: {len(frames)} frame(s) could not be '
                     f'decoded (frames {shown})'}


def predict_file(path: str | predict_io.InputSpec, run: predict_run.Run,
                 output_dir: str, options: Options = Options()) -> Result:
  """Predicts one input into `<output_dir>/<name>.csv`.

  Args:
    path: a video, an image or a folder of images (named by its file
      name, extension dropped), or an `InputSpec` (`predict_io.plan_inputs`
      names several inputs; `predict_io.array_input` for arrays).
    run: the loaded run.
    output_dir: where the CSV (and plot, annotated copies) go.
    options: how to predict.

  Returns:
    The `Result`; frames that could not be decoded keep their rows
    (status 'unreadable') and are listed in `Result.problems`.

  Raises:
    ValueError naming the input when it is missing, empty or unreadable,
    or naming an output that exists (unless `options.overwrite`).
  """
  start_total = time.perf_counter()
  spec = predict_io.expand_input(path) if isinstance(path, str) else path
  predict_io.plan_outputs([spec], output_dir, options.plot, options.annotate,
                          options.overwrite)
  csv_path = os.path.join(output_dir, f'{spec.name}.csv')
  folder = os.path.dirname(csv_path)
  os.makedirs(folder, exist_ok=True)
  timings = {k: 0.0 for k in ('decode', 'wait_decode', 'detect_track',
                              'crop_normalise', 'flow', 'model', 'write')}
  reader = predict_io.FrameReader(spec)
  tracker = tracking.FaceTracker(options.tracker)
  windows = (run.median_windows if options.smooth is None else
             np.full(len(run.aus), options.smooth))
  show_progress = (options.progress and spec.kind != 'image'
                   and reader.total != 1)
  progress = tqdm.tqdm(total=reader.total, desc=spec.name, unit='frame',
                       file=sys.stderr, disable=not show_progress)
  scratch_prefix = f'.{os.path.basename(spec.name)}_'
  with progress, tempfile.TemporaryDirectory(
      dir=folder, prefix=scratch_prefix) as scratch:
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
        progress.update()
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
      raise ValueError(f'Input {spec.path}: no frame could be decoded.')
    raw = np.memmap(spill_path, dtype=pass1.dtype, mode='r')
    start = time.perf_counter()
    probabilities = predict_table.post_process(raw, run, options, windows,
                                               scratch)
    rows = predict_table.write_csv(csv_path, spec, raw, probabilities, run)
    timings['write'] += time.perf_counter() - start
    success = np.asarray(raw['success']) > 0
    faces_count = int(success.sum())
    tracks = len(np.unique(np.asarray(raw['face_id'])[success]))
    del raw, probabilities  # Close the memory maps before the folder goes.
  extra = []
  if options.plot:
    png = predict_io.plot_tracks(
        csv_path, os.path.join(output_dir, f'{spec.name}_aus.png'), run.aus)
    extra += [png] if png else []
  if options.annotate:
    extra += predict_io.annotate(spec, csv_path, output_dir, run.aus)
  if frames > len(reader.unreadable) and not faces_count:
    logging.warning('%s: no face found in %d frame(s).', spec.path,
                    frames - len(reader.unreadable))
  timings['total'] = time.perf_counter() - start_total
  return Result(input=spec.path, csv=csv_path, frames=frames,
                unreadable=len(reader.unreadable), rows=rows,
                faces=faces_count, tracks=tracks, seconds=timings,
                extra=extra, problems=_problems(spec, reader.unreadable),
                skipped=spec.skipped)


def predict_many(specs: Sequence[predict_io.InputSpec], run: predict_run.Run,
                 output_dir: str, options: Options = Options(),
                 report: Callable[[str, Result | None, dict[str, str]],
                                  None] | None = None
                 ) -> tuple[list[Result], dict[str, str]]:
  """Every input in turn; an input that fails is reported, the others run.

  Args:
    specs: the inputs, named and checked by `predict_io.plan_inputs`.
    run, output_dir, options: as `predict_file`.
    report: called after each input with (path, its Result or None when
      it failed, {path: reason} of its problems), e.g. to print them.

  Returns:
    results of the inputs that gave a table, {path: one-line reason} of
    the inputs that failed and of what could not be decoded in the others
    (`Result.problems`; their rows are kept, status 'unreadable').
  """
  results, errors = [], {}
  for spec in specs:
    try:
      result = predict_file(spec, run, output_dir, options)
    except (ValueError, OSError, cv2.error) as error:
      result = None
      problems = {spec.path: (str(error).splitlines()[0] if str(error)
                              else repr(error))}
    else:
      results.append(result)
      problems = result.problems
    errors.update(problems)
    if report is not None:
      report(spec.path, result, problems)
  return results, errors


def _plan(inputs: Any, output_dir: str, options: Options
          ) -> tuple[list[predict_io.InputSpec], dict[str, str]]:
  """`predict`'s inputs as InputSpecs (one for arrays) and the errors of
  unusable paths; ValueError for an input of no known form."""
  if isinstance(inputs, (str, os.PathLike)):
    inputs = [inputs]
  if isinstance(inputs, np.ndarray):
    specs = [predict_io.array_input(inputs)]
  else:
    iterator = iter(inputs)
    first = next(iterator, None)
    if first is None:
      raise ValueError('predict: no inputs given.')
    if not isinstance(first, (str, os.PathLike)):
      # Frames: a list keeps its length (the progress bar's total).
      frames = (inputs if isinstance(inputs, Sequence) else
                itertools.chain([first], iterator))
      specs = [predict_io.array_input(frames)]
    else:
      paths = [first, *iterator]
      wrong = [p for p in paths if not isinstance(p, (str, os.PathLike))]
      if wrong:
        raise ValueError(f'predict: inputs mix paths and {type(wrong[0])}; '
                         'give paths, or frames as arrays (one sequence).')
      return predict_io.plan_inputs(
          [os.fspath(p) for p in paths], output_dir, options.plot,
          options.annotate, options.overwrite)
  predict_io.plan_outputs(specs, output_dir, options.plot, options.annotate,
                          options.overwrite)
  return specs, {}


def _read_table(result: Result, names: Sequence[str]) -> pd.DataFrame:
  """A predict CSV as a DataFrame with the `input` column first; only
  empty cells are missing (a file named 'NA' stays text)."""
  table = pd.read_csv(result.csv, keep_default_na=False, na_values={
      name: [''] for name in names if name not in ('status', 'file')})
  table.insert(0, 'input', result.input)
  return table


def predict(inputs: str | os.PathLike | Sequence[str] | np.ndarray
            | Iterable[np.ndarray], checkpoint: str,
            output_dir: str | None = None, **options: Any) -> pd.DataFrame:
  """Predicts AUs on videos, images or frames and returns the table.

  Args:
    inputs: a path or paths (video, image or folder of images), or frames
      as arrays: one [H, W, 3] uint8 RGB image, a [T, H, W, 3] array, or a
      list or iterator of [H, W, 3] frames (one sequence; read as it is
      consumed, so a generator need not fit in memory).
    checkpoint: a run directory (with config.json and checkpoints/).
    output_dir: where the CSVs (and plots) go (names: module doc); default a
      temporary folder that is removed afterwards.
    **options: fields of `Options` (faces, smooth, calibrate, batch_size,
      tracker, plot, annotate, overwrite, progress).

  Returns:
    pandas.DataFrame with `input` then `predict_table.columns(aus)`: each
    input's table in input order (`frame` restarts at 1 per input).
    `.attrs['errors']`: {path: one-line reason} of inputs that failed and
    of files or frames that could not be decoded (rows kept, status
    'unreadable'); `.attrs['skipped']`: {folder: entries that are not
    images}; `.attrs['results']`: the per-input `Result`s.

  Raises:
    ValueError: the checkpoint directory is not a finished run; the output
      folder cannot be written; outputs would collide or exist (nothing is
      written); an array frame is not [H, W, 3] uint8.
  """
  config = Options(**options)
  with tempfile.TemporaryDirectory() as scratch:
    directory = scratch if output_dir is None else output_dir
    predict_io.check_output_dir(directory)
    specs, errors = _plan(inputs, directory, config)
    run = predict_run.load_run(checkpoint)
    if specs and specs[0].kind == 'arrays':
      # Bad frames are the caller's bug: raised, not collected.
      results = [predict_file(specs[0], run, directory, config)]
      errors.update(results[0].problems)
    else:
      results, failed = predict_many(specs, run, directory, config)
      errors.update(failed)
    names = predict_table.columns(run.aus, run.intensity, landmarks=True)
    tables = [_read_table(result, names) for result in results]
  table = (pd.concat(tables, ignore_index=True) if tables else
           pd.DataFrame(columns=['input'] + names))
  table.attrs['errors'] = errors
  table.attrs['skipped'] = {r.input: list(r.skipped) for r in results
                            if r.skipped}
  table.attrs['results'] = results
  return table
