r"""Videos and images -> per-frame AU tables with any trained au_jax run.

  python -m au_jax.predict --checkpoint=workdir/synthetic_au/drml/fold_1 \
      --input=clip.mp4 --input=photos/ --output_dir=out [--smooth=7] \
      [--calibrate] [--plot] [--annotate] [--faces=detect|full_frame]

or from Python: `au_jax.predict.predict(['clip.mp4'], checkpoint)` returns
the same table as a pandas DataFrame. Each input (a video, an image, or a
folder of images taken as the frames of one sequence) gives `<stem>.csv`.

A run directory describes itself: `config.json` gives the AU list (the
columns), the face preprocessing of the dataset it was trained on (the
builder config's crop/aligned mode, margin and stored face size), the input
size and pixel scaling; `test_results.json` gives the decision threshold per
AU and, when evaluation tuned one, the median window.

One model per AU (`config.one_model_per=('au',)`): `--checkpoint` may name
the fold directory that holds the runs `au_<nn>/`. A model whose module has
`join_heads` (CAUD/HydraNet: per-AU heads on one frozen encoder) is joined
into one model that predicts every AU in one forward pass, each AU with its
own run's threshold and window (`_load_joined`); other per-AU models are
refused with the AU runs to pick from.

Table (OpenFace 2 conventions, so its analysis scripts read it): `frame`
(1-based), `face_id`, `timestamp` (s), `confidence`, `success`, the face box
`face_x face_y face_width face_height` (frame pixels), then `AUxx_r` (only
for models that predict intensity), `AUxx_c` (0/1 at the run's threshold)
and `AUxx_p` (probability), each block in the run's AU order as OpenFace
groups its _r and _c blocks, and last `file` (the image a folder frame came
from). Every frame has a row: a frame without a face, or one that could not
be decoded, has `success=0`, `face_id=-1` and empty box and AU cells.

How a frame becomes rows (pass 1, streaming): a background thread decodes
frames; `tracking.FaceTracker` finds faces (full Haar scan every few frames,
local re-detection in between) and keeps ids by box overlap; each face is
warped as the dataset builder stored faces, then `prepare_model_input`
applies the evaluation transforms; faces from consecutive frames fill
fixed-size batches (one compile) and the next batch is prepared while the
model runs the last. Raw rows (box, logits) go to a temporary file.
Pass 2 reads that file per track: optional per-person calibration, then
optional median smoothing (AUNets' post-processing,
`postprocess.median_smooth` per track), then thresholds and the CSV. Memory
does not grow with video length (measured in
benchmarks/predict_throughput.py).

Calibration (`--calibrate`, off by default): OpenFace's dynamic models
subtract a person's neutral estimate. Here, per track and AU, the logit at
the track's `calibration_percentile` (10) is taken as that person's neutral
and moved to the logit of `calibration_floor` (probability 0.05): every
frame's logit shifts by the same amount. It assumes each AU is absent in at
least that share of a track's frames; short tracks (< 25 frames) are left
as they are.
"""

import dataclasses
import importlib
import json
import os
import sys
import tempfile
import time
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging
import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from au_jax import checkpointing
from au_jax import models
from au_jax import postprocess
from au_jax import predict_io
from au_jax import prepare
from au_jax import tracking
from au_jax import transforms
from au_jax.preprocess import face as face_lib

BOX_COLUMNS = ('face_x', 'face_y', 'face_width', 'face_height')
META_COLUMNS = ('frame', 'face_id', 'timestamp', 'confidence', 'success')
_MIN_CALIBRATION_FRAMES = 25


@dataclasses.dataclass
class Run:
  """A trained run, loaded for prediction.

  Attributes:
    directory: the run directory.
    config: its training config.
    aus: [C] FACS ids (model output order).
    model: the linen Module (no pmap axis).
    variables: {'params', 'batch_stats'} of the restored step.
    step: the restored step (best by validation F1, else the latest).
    thresholds: [C] decision thresholds on the probability.
    median_windows: [C] odd median windows the run tuned (1 = none).
    face_options: how faces are cut out of frames (the dataset's).
    intensity: True when the model returns `aux['au_intensity']`.
    apply_fn: jitted (variables, batch) -> (logits [B, C], intensity
      [B, C]; zeros without intensity).
  """
  directory: str
  config: ml_collections.ConfigDict
  aus: tuple[int, ...]
  model: Any
  variables: dict[str, Any]
  step: int
  thresholds: np.ndarray
  median_windows: np.ndarray
  face_options: face_lib.FaceOptions
  intensity: bool = False
  apply_fn: Any = None


def _tuples(value: Any) -> Any:
  """JSON lists back to tuples (ml_collections keeps tuples as lists)."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def load_config(directory: str) -> ml_collections.ConfigDict:
  """The run's config.json, lists turned back into tuples; ValueError (one
  line) when the directory is not a run."""
  try:
    config = checkpointing.read_config(directory)
  except FileNotFoundError as error:
    raise ValueError(str(error).splitlines()[0]) from None
  except json.JSONDecodeError as error:
    raise ValueError(f'{directory}/config.json is not valid JSON '
                     f'({error}).') from None
  return ml_collections.ConfigDict(_tuples(config.to_dict()))


def face_options_for(config: ml_collections.ConfigDict) -> face_lib.FaceOptions:
  """The face crop the run's training records were made with.

  Real-dataset builder configs carry `face_options()` (crop or aligned,
  margin, stored size); builders without one (synthetic_au renders whole
  faces) get a Haar crop with the default margin at their stored image size.
  """
  builder_class = prepare.builder_class(config.dataset)
  builder_configs = {c.name: c for c in builder_class.BUILDER_CONFIGS or []}
  builder_config = builder_configs.get(config.dataset_config)
  if builder_config is None:
    raise ValueError(f'config.json: dataset {config.dataset!r} has no '
                     f'config {config.dataset_config!r} '
                     f'(known: {sorted(builder_configs)}).')
  if hasattr(builder_config, 'face_options'):
    return builder_config.face_options()
  with tempfile.TemporaryDirectory() as data_dir:
    builder = builder_class(config=config.dataset_config, data_dir=data_dir)
    size = int(builder.info.features['image'].shape[0])
  return face_lib.FaceOptions(image_size=size, mode='crop')


def _decision_rule(directory: str, config, aus) -> tuple[np.ndarray,
                                                         np.ndarray]:
  """Per-AU thresholds and median windows from test_results.json."""
  thresholds = np.full(len(aus), float(config.get('threshold', 0.5)))
  windows = np.ones(len(aus), np.int64)
  path = os.path.join(directory, 'test_results.json')
  if not os.path.isfile(path):
    logging.warning('%s: no test_results.json; threshold %.2f for every AU, '
                    'no smoothing.', directory, thresholds[0])
    return thresholds, windows
  with open(path, encoding='utf-8') as f:
    results = json.load(f)
  per_au = results.get('per_au', {})
  for c, au in enumerate(aus):
    entry = per_au.get(str(au), {})
    if entry.get('threshold') is not None:
      thresholds[c] = float(entry['threshold'])
    window = entry.get('median_window', results.get('median_window'))
    if window:
      windows[c] = int(window)
  return thresholds, windows


def _restore(directory: str) -> tuple[dict[str, Any], int]:
  """(variables, step) of a run directory; ValueError (one line) when it
  has no finished step."""
  weights_only = os.path.isfile(os.path.join(
      directory, checkpointing.WEIGHTS_DIR, checkpointing.FINISHED))
  if not (weights_only
          or os.path.isdir(os.path.join(directory, 'checkpoints'))):
    raise ValueError(f'Run directory {directory} has no checkpoints/ (nor '
                     f'{checkpointing.WEIGHTS_DIR}/): no finished training '
                     'step.')
  try:
    # The best step by validation, else the newest intact one.
    state, step = (checkpointing.restore_weights_only(directory)
                   if weights_only else checkpointing.restore_raw(directory))
  except FileNotFoundError as error:
    raise ValueError(str(error).splitlines()[0]) from None
  variables = {'params': state['params']}
  if state.get('batch_stats'):
    variables['batch_stats'] = state['batch_stats']
  return variables, int(step)


def _au_run_dirs(directory: str) -> list[str]:
  """The `au_<nn>` run directories (with a config.json) of a fold
  directory that is not itself a run; [] otherwise."""
  if os.path.isfile(os.path.join(directory, 'config.json')):
    return []
  names = sorted(n for n in os.listdir(directory) if n.startswith('au_')
                 and os.path.isfile(os.path.join(
                     directory, n, 'config.json')))
  return [os.path.join(directory, n) for n in names]


def _load_joined(directory: str, au_dirs: Sequence[str]):
  """(config, variables, step, thresholds, windows) of one model joined
  from per-AU runs: the model module's `join_heads` merges their parameter
  trees (it checks they share one encoder); AU order and each AU's decision
  rule come from the AU runs."""
  configs = [load_config(d) for d in au_dirs]
  names = sorted({c.model_name for c in configs})
  module = importlib.import_module(f'au_jax.models.{names[0]}')
  if len(names) > 1 or not hasattr(module, 'join_heads'):
    raise ValueError(
        f'{directory} holds one run per AU of model(s) {names}, which '
        'cannot be joined into one model; give one AU run: '
        f'{[os.path.basename(d) for d in au_dirs]}.')
  restored = [_restore(d) for d in au_dirs]
  try:
    params = module.join_heads([v['params'] for v, _ in restored])
  except ValueError as error:
    raise ValueError(f'{directory}: {error}') from None
  aus = tuple(int(a) for c in configs for a in c.aus)
  config = ml_collections.ConfigDict(configs[0].to_dict())
  config.aus = aus
  rules = [_decision_rule(d, c, tuple(int(a) for a in c.aus))
           for d, c in zip(au_dirs, configs)]
  logging.info('%s: joined %d per-AU runs (AUs %s) into one %s model.',
               directory, len(au_dirs), list(aus), names[0])
  return (config, {'params': params}, min(step for _, step in restored),
          np.concatenate([t for t, _ in rules]),
          np.concatenate([w for _, w in rules]))


def load_run(directory: str) -> Run:
  """Restores a run directory (or a fold directory of per-AU runs that
  join into one model, module docstring); ValueError (one line) when it is
  unusable."""
  directory = os.path.abspath(os.path.expanduser(directory))
  if not os.path.isdir(directory):
    raise ValueError(f'Checkpoint directory {directory} does not exist.')
  au_dirs = _au_run_dirs(directory)
  if au_dirs:
    config, variables, step, thresholds, windows = _load_joined(directory,
                                                                au_dirs)
    aus = tuple(config.aus)
  else:
    config = load_config(directory)
    variables, step = _restore(directory)
    aus = tuple(int(a) for a in config.aus)
    thresholds, windows = _decision_rule(directory, config, aus)
  run = Run(directory=directory, config=config, aus=aus,
            model=models.create(config), variables=variables, step=int(step),
            thresholds=thresholds, median_windows=windows,
            face_options=face_options_for(config))
  _, aux = jax.eval_shape(
      lambda v, b: run.model.apply(v, b, train=False), variables,
      prepare_model_input([np.zeros(
          (run.face_options.image_size,) * 2 + (3,), np.uint8)], config))
  run.intensity = isinstance(aux, dict) and 'au_intensity' in aux

  def apply(variables, batch):
    logits, aux = run.model.apply(variables, batch, train=False)
    intensity = (aux['au_intensity'] if run.intensity
                 else jnp.zeros_like(logits))
    return logits.astype(jnp.float32), intensity.astype(jnp.float32)

  run.apply_fn = jax.jit(apply)
  return run


def prepare_model_input(faces: Sequence[np.ndarray],
                        config: ml_collections.ConfigDict
                        ) -> dict[str, np.ndarray]:
  """Face images -> the model's batch, exactly as evaluation prepares them.

  The one place where a face crop becomes model input: the evaluation
  pipeline's `CenterCrop(resize_size, crop_size)` then `Normalize(pixel_mean,
  pixel_std)` on each record. Haar gives no landmarks, so they are absent
  (-1), as for a record without landmarks.

  Args:
    faces: N x [S, S, 3] uint8 RGB faces (S = the dataset's stored size).
    config: the run's config.

  Returns:
    'image' [N, crop, crop, 3] float32 and 'landmarks' [N, 68, 2] float32.
  """
  geometry = transforms.CenterCrop(config.resize_size, config.crop_size)
  normalize = transforms.Normalize(mean=tuple(config.pixel_mean),
                                   std=tuple(config.pixel_std))
  images, landmarks = [], []
  for image in faces:
    record = {'image': image, 'landmarks': np.full((68, 2), -1, np.float32)}
    record = normalize.map(geometry.map(record))
    images.append(record['image'])
    landmarks.append(record['landmarks'])
  return {'image': np.stack(images), 'landmarks': np.stack(landmarks)}


def au_columns(aus: Sequence[int], intensity: bool = False) -> list[str]:
  """`AUxx_r` (if intensity), `AUxx_c`, `AUxx_p` blocks in `aus` order."""
  suffixes = ('r', 'c', 'p') if intensity else ('c', 'p')
  return [f'AU{au:02d}_{s}' for s in suffixes for au in aus]


def columns(aus: Sequence[int], intensity: bool = False) -> list[str]:
  """Every column of a predict table, in order."""
  return (list(META_COLUMNS) + list(BOX_COLUMNS) + au_columns(aus, intensity)
          + ['file'])


@dataclasses.dataclass
class Options:
  """How predict runs (the CLI flags).

  Attributes:
    faces: 'detect' (Haar + tracking) or 'full_frame' (the frame's central
      square is the face: for inputs that are face crops already, e.g.
      synthetic_au frames).
    smooth: median window (odd); None = the run's tuned window, 1 = off.
    calibrate: per-track baseline shift (module doc).
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


def _raw_dtype(num_aus: int) -> np.dtype:
  return np.dtype([('frame', '<i4'), ('face_id', '<i4'),
                   ('timestamp', '<f8'), ('confidence', '<f4'),
                   ('success', 'i1'), ('box', '<f4', (4,)),
                   ('logits', '<f4', (num_aus,)),
                   ('intensity', '<f4', (num_aus,))])


@dataclasses.dataclass
class _PendingFrame:
  frame: predict_io.Frame
  faces: list[tracking.Face]
  logits: np.ndarray  # [F, C], filled when the face's batch returns.
  intensity: np.ndarray
  waiting: int


class _Pass1:
  """Frames -> raw rows in a spill file, batching faces across frames."""

  def __init__(self, run: Run, options: Options, spill, timings):
    self.run, self.options, self.spill, self.timings = run, options, spill, \
        timings
    self.dtype = _raw_dtype(len(run.aus))
    self.pending: list[_PendingFrame] = []
    self.faces: list[np.ndarray] = []
    self.owners: list[tuple[_PendingFrame, int]] = []
    self.in_flight = None
    self.rows = 0

  def add(self, frame: predict_io.Frame, faces: list[tracking.Face],
          crops: list[np.ndarray]) -> None:
    num_aus = len(self.run.aus)
    entry = _PendingFrame(frame, faces, np.zeros((len(faces), num_aus),
                                                 np.float32),
                          np.zeros((len(faces), num_aus), np.float32),
                          len(faces))
    self.pending.append(entry)
    for k, crop in enumerate(crops):
      self.faces.append(crop)
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
    batch = prepare_model_input(self.faces, self.run.config)
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
    self.faces, self.owners = [], []

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
    for entry in self.pending[:done]:
      frame = entry.frame
      if not entry.faces:
        rows.append((frame.index, -1, frame.timestamp, 0.0, 0,
                     np.full(4, np.nan), np.full(len(self.run.aus), np.nan),
                     np.full(len(self.run.aus), np.nan)))
      for k, found in enumerate(entry.faces):
        rows.append((frame.index, found.face_id, frame.timestamp,
                     found.confidence, 1, found.box, entry.logits[k],
                     entry.intensity[k]))
    np.array(rows, self.dtype).tofile(self.spill)
    self.rows += len(rows)
    del self.pending[:done]
    self.timings['write'] += time.perf_counter() - start


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


def _logit(p: float) -> float:
  return float(np.log(p / (1 - p)))


def _post_process(raw: np.ndarray, run: Run, options: Options,
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


def _write_csv(path: str, spec: predict_io.InputSpec, raw: np.ndarray,
               probabilities: np.ndarray, run: Run) -> int:
  writer = predict_io.CsvWriter(path, columns(run.aus, run.intensity))
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
                spec.path)
        meta = [frame, int(record['face_id']), float(record['timestamp']),
                float(record['confidence']), int(record['success'])]
        if record['success']:
          box = [float(v) for v in record['box']]
          values = ([float(v) for v in record['intensity']]
                    if run.intensity else [])
          values += [int(v) for v in present[k]]
          values += [float(v) for v in probs[k]]
        else:
          box = [None] * 4
          values = [None] * len(au_columns(run.aus, run.intensity))
        rows.append(meta + box + values + [file])
      writer.write(rows)
  except BaseException:
    writer.close(keep=False)
    raise
  writer.close()
  return writer.rows


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


def predict_file(path: str, run: Run, output_dir: str,
                 options: Options = Options()) -> Result:
  """Predicts one input (video, image or folder) into `<stem>.csv`.

  Raises:
    ValueError naming the input when it is missing, empty or unreadable.
  """
  start_total = time.perf_counter()
  spec = predict_io.expand_input(path)
  os.makedirs(output_dir, exist_ok=True)
  timings = {k: 0.0 for k in ('decode', 'wait_decode', 'detect_track',
                              'crop_normalise', 'model', 'write')}
  reader = predict_io.FrameReader(spec)
  tracker = tracking.FaceTracker(options.tracker)
  windows = (run.median_windows if options.smooth is None else
             np.full(len(run.aus), options.smooth))
  with tempfile.TemporaryDirectory(dir=output_dir,
                                   prefix=f'.{spec.stem}_') as scratch:
    spill_path = os.path.join(scratch, 'raw.bin')
    with open(spill_path, 'wb') as spill:
      pass1 = _Pass1(run, options, spill, timings)
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
        pass1.add(frame, faces, crops)
      pass1.finish()
    timings['decode'] = reader.decode_seconds
    if not frames:
      raise ValueError(f'Input {path}: no frame could be decoded.')
    raw = np.memmap(spill_path, dtype=pass1.dtype, mode='r')
    start = time.perf_counter()
    probabilities = _post_process(raw, run, options, windows, scratch)
    csv_path = os.path.join(output_dir, f'{spec.stem}.csv')
    rows = _write_csv(csv_path, spec, raw, probabilities, run)
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


def predict_many(inputs: Sequence[str], run: Run, output_dir: str,
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
    pandas.DataFrame with `columns(aus)` (the CSV of each input, in input
    order; `frame` restarts at 1 per input, `file` tells them apart). Inputs
    that failed are in `.attrs['errors']` ({path: message}), the per-input
    `Result`s in `.attrs['results']`.

  Raises:
    ValueError: the checkpoint directory is not a finished run.
  """
  try:
    import pandas as pd  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError('au_jax.predict.predict returns a pandas DataFrame: '
                      '`pip install pandas`, or use predict_many() which '
                      'writes CSVs.') from error
  if isinstance(inputs, str):
    inputs = [inputs]
  run = load_run(checkpoint)
  config = Options(**options)
  with tempfile.TemporaryDirectory() as scratch:
    results, errors = predict_many(inputs, run, output_dir or scratch, config)
    tables = [pd.read_csv(r.csv, keep_default_na=True) for r in results]
  table = (pd.concat(tables, ignore_index=True) if tables else
           pd.DataFrame(columns=columns(run.aus, run.intensity)))
  table.attrs['errors'] = errors
  table.attrs['results'] = results
  return table


def _define_flags() -> None:
  """The CLI flags; defined only when run as a program, so importing
  au_jax.predict adds no flags to another program's absl FLAGS."""
  flags.DEFINE_string('checkpoint', None, 'Run directory.')
  flags.DEFINE_multi_string('input', [], 'Video, image or folder of images; '
                            'repeat for several.')
  flags.DEFINE_string('output_dir', None, 'Where <stem>.csv go.')
  flags.DEFINE_integer('smooth', None, 'Median window (odd); default the '
                       "run's tuned window, 1 = off.")
  flags.DEFINE_boolean('calibrate', False, 'Per-person baseline shift (see '
                       'au_jax/predict.py).')
  flags.DEFINE_boolean('plot', False, 'Write <stem>_aus.png.')
  flags.DEFINE_boolean('annotate', False, 'Write annotated copies.')
  flags.DEFINE_enum('faces', 'detect', ['detect', 'full_frame'],
                    'Find faces, or take each frame as a face crop.')
  flags.DEFINE_integer('batch_size', 32, 'Faces per model call.')
  flags.DEFINE_integer('full_scan_every', 5, 'Frames between whole-frame '
                       'face scans.')


def main(argv: Sequence[str]) -> int:
  """The CLI: exit 0, 1 when some input failed, 2 when nothing could run."""
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    print(f'predict: unexpected arguments {argv[1:]}', file=sys.stderr)
    return 2
  if not FLAGS.checkpoint or not FLAGS.input or not FLAGS.output_dir:
    print('predict: --checkpoint, --input and --output_dir are required.',
          file=sys.stderr)
    return 2
  try:
    options = Options(
        faces=FLAGS.faces, smooth=FLAGS.smooth, calibrate=FLAGS.calibrate,
        batch_size=FLAGS.batch_size, plot=FLAGS.plot, annotate=FLAGS.annotate,
        tracker=tracking.TrackerOptions(full_scan_every=FLAGS.full_scan_every))
    run = load_run(FLAGS.checkpoint)
  except ValueError as error:
    print(f'predict: {error}', file=sys.stderr)
    return 2
  results, errors = predict_many(FLAGS.input, run, FLAGS.output_dir,
                                 options)
  for result in results:
    fps = result.frames / max(result.seconds['total'], 1e-9)
    print(f'{result.csv}: {result.frames} frames, {result.faces} face rows, '
          f'{result.tracks} track(s), {result.unreadable} unreadable, '
          f'{fps:.1f} frames/s' + ''.join(f'; {p}' for p in result.extra))
  for path, message in errors.items():
    print(f'predict: {path}: {message}', file=sys.stderr)
  return 1 if errors else 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
