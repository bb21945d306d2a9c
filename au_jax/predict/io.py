"""Inputs and outputs of `au_jax.predict`: frames in, CSV, plot, annotation.

- `expand_input`: a video, an image or a folder of images becomes one
  `InputSpec` (one CSV); a missing file, a folder without images or an
  unknown file type is a one-line ValueError naming the path. A folder's
  entries that are not images are named in `InputSpec.skipped`.
  `array_input`: RGB frames given as numpy arrays become one sequence.
- `plan_inputs` classifies and names every input, and `plan_outputs`
  refuses, before anything is written, two inputs that would write the
  same file or an output that exists (unless overwrite). Naming rule
  (`output_names`): an input's CSV is its path relative to the folder that
  holds all inputs, extension replaced by `.csv` (`a/s1/clip.mp4` and
  `a/s2/clip.mp4` give `s1/clip.csv` and `s2/clip.csv`; one input, or
  inputs side by side, give `<stem>.csv`). Inputs that still share a name
  (`x.jpg` beside `x.mp4`) are refused. `check_output_dir` refuses a
  folder that cannot be written.
- `FrameReader`: decodes frames in a background thread into a small bounded
  queue, so decoding overlaps detection and the model while memory stays
  flat with video length. A frame that cannot be decoded is still a `Frame`
  (image None, `error` says why), listed in `unreadable`.
- `plot_tracks` and `annotate` read the finished CSV back (and, for
  annotate, decode the input a second time), so neither needs the video or
  its predictions in memory.
"""

import collections
import csv
import dataclasses
import math
import os
import queue
import tempfile
import threading
import time
from typing import Any, Iterable, Iterator, Sequence, Sized

import cv2
import numpy as np

from au_jax import visualize

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# The input name (`file` column, `.attrs['results']`) and output name of
# frames given as arrays.
ARRAY_NAME = 'array'


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """One input of a predict call.

  Attributes:
    path: as given (`ARRAY_NAME` for arrays).
    kind: 'video', 'image', 'folder' (images in name order = frames) or
      'arrays' (RGB numpy frames, one sequence).
    files: the image files of a folder (one for 'image', empty otherwise).
    name: output name relative to the output folder, without extension
      (`<name>.csv`); may hold folders (`output_names`).
    skipped: a folder's entries that are not images (folders end in '/').
    frames: for 'arrays', the iterable of [H, W, 3] uint8 RGB frames.
  """
  path: str
  kind: str
  files: tuple[str, ...]
  name: str
  skipped: tuple[str, ...] = ()
  frames: Iterable[np.ndarray] | None = dataclasses.field(default=None,
                                                          compare=False)


def expand_input(path: str) -> InputSpec:
  """Classifies `path`; raises ValueError (one line) when it is unusable."""
  name = os.path.basename(os.path.abspath(path))
  if os.path.isdir(path):
    files, skipped = [], []
    for entry in sorted(os.listdir(path)):
      full = os.path.join(path, entry)
      if os.path.isdir(full):
        skipped.append(entry + '/')
      elif entry.lower().endswith(IMAGE_EXTENSIONS):
        files.append(full)
      else:
        skipped.append(entry)
    if not files:
      raise ValueError(f'Folder {path} holds no images '
                       f'({", ".join(IMAGE_EXTENSIONS)})'
                       + (f'; skipped: {", ".join(skipped)}.' if skipped
                          else '.'))
    return InputSpec(path, 'folder', tuple(files), name, tuple(skipped))
  if not os.path.exists(path):
    raise ValueError(f'Input {path} does not exist.')
  stem, extension = os.path.splitext(name)
  extension = extension.lower()
  if extension in VIDEO_EXTENSIONS:
    return InputSpec(path, 'video', (), stem)
  if extension in IMAGE_EXTENSIONS:
    return InputSpec(path, 'image', (path,), stem)
  raise ValueError(f'Input {path}: unknown file type {extension!r}; expected '
                   f'a video ({", ".join(VIDEO_EXTENSIONS)}), an image or a '
                   'folder of images.')


def array_input(frames: np.ndarray | Iterable[np.ndarray]) -> InputSpec:
  """Frames given as arrays: one [H, W, 3] uint8 RGB image, a [T, H, W, 3]
  array or an iterable of [H, W, 3] frames, taken as one sequence (frames
  1, 2, ...; timestamps 0, as for images). Frames are checked as they are
  read (`FrameReader`)."""
  if isinstance(frames, np.ndarray):
    if frames.ndim not in (3, 4):
      raise ValueError(f'An array input is one (H, W, 3) image or (T, H, W, '
                       f'3) frames, got shape {frames.shape}.')
    if frames.ndim == 3:
      frames = [frames]
  return InputSpec(ARRAY_NAME, 'arrays', (), ARRAY_NAME, frames=frames)


def output_names(paths: Sequence[str]) -> list[str]:
  """Output name of each input path (module doc): the path relative to the
  inputs' common folder, a file's extension dropped.

  `['a/s1/clip.mp4', 'a/s2/clip.mp4']` -> `['s1/clip', 's2/clip']`;
  `['a/x.jpg', 'a/frames/']` -> `['x', 'frames']`.
  """
  absolute = [os.path.abspath(p) for p in paths]
  if not absolute:
    return []
  common = os.path.commonpath([os.path.dirname(p) for p in absolute])
  names = []
  for path, full in zip(paths, absolute):
    name = os.path.relpath(full, common)
    names.append(name if os.path.isdir(path) else os.path.splitext(name)[0])
  return names


def output_files(spec: InputSpec, plot: bool, annotate: bool) -> list[str]:
  """The files (a folder ends in '/') predicting `spec` writes, relative to
  the output folder: `<name>.csv`, with plot `<name>_aus.png`, with annotate
  `<name>_annotated.mp4` (video), `.png` (image) or `/` (a folder of
  PNGs)."""
  files = [f'{spec.name}.csv']
  if plot:
    files.append(f'{spec.name}_aus.png')
  if annotate:
    files.append(f'{spec.name}_annotated' + {
        'video': '.mp4', 'image': '.png', 'folder': '/'}[spec.kind])
  return files


def check_output_dir(path: str) -> None:
  """Checks that the output folder, or the nearest folder above it that
  exists (where it will be created), takes files; ValueError (one line,
  naming it) otherwise. Leaves nothing behind."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f'{path} is a file, not a folder.')
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f'{path} cannot be created: {existing} is a file.')
  try:
    # A real write: permission bits do not tell for root or read-only
    # mounts.
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as error:
    raise ValueError(f'{path} is not writable ({existing}: '
                     f'{error.strerror or error}).') from None


def plan_outputs(specs: Sequence[InputSpec], output_dir: str, plot: bool,
                 annotate: bool, overwrite: bool) -> None:
  """Refuses (ValueError listing every case, one per line) inputs whose
  outputs would collide, and outputs that exist unless `overwrite`.

  Runs before any input is predicted, so a refused call writes nothing.
  """
  if annotate and any(spec.kind == 'arrays' for spec in specs):
    raise ValueError('annotate draws on the input files; frames given as '
                     'arrays have none (plot the returned table instead).')
  writers = collections.defaultdict(list)
  for spec in specs:
    for name in output_files(spec, plot, annotate):
      writers[name].append(spec.path)
  problems = [f'{" and ".join(paths)} would '
              f'{"both" if len(paths) == 2 else "all"} write '
              f'{os.path.join(output_dir, name)} (rename or move one)'
              for name, paths in writers.items() if len(paths) > 1]
  if not overwrite:
    problems += [
        f'{os.path.join(output_dir, name)} exists; --overwrite '
        '(overwrite=True) replaces it' for name in writers
        if os.path.lexists(os.path.join(output_dir, name.rstrip('/')))]
  if problems:
    raise ValueError('\n'.join(problems))


def plan_inputs(paths: Sequence[str], output_dir: str, plot: bool = False,
                annotate: bool = False, overwrite: bool = False
                ) -> tuple[list[InputSpec], dict[str, str]]:
  """Every input path classified and named before any is predicted.

  Returns:
    the usable inputs (names from `output_names`), {path: one-line error}
    of the others.

  Raises:
    ValueError from `plan_outputs`: outputs would collide or exist.
  """
  specs, errors = [], {}
  for path, name in zip(paths, output_names(paths)):
    try:
      specs.append(dataclasses.replace(expand_input(path), name=name))
    except ValueError as error:
      errors[path] = str(error)
  plan_outputs(specs, output_dir, plot, annotate, overwrite)
  return specs, errors


@dataclasses.dataclass
class Frame:
  """A decoded frame.

  Attributes:
    index: 1-based frame number.
    timestamp: seconds ((index - 1) / fps; 0 for images and arrays).
    image: [H, W, 3] uint8 BGR, or None when the frame could not be decoded.
    file: the file it came from (the video, the image in a folder, or
      `ARRAY_NAME`).
    error: why `image` is None (None when it was decoded).
  """
  index: int
  timestamp: float
  image: np.ndarray | None
  file: str
  error: str | None = None


_END = object()


def _image_error(path: str) -> str:
  """Why OpenCV could not decode the image file at `path`."""
  try:
    size = os.path.getsize(path)
  except OSError as error:
    return f'cannot be read ({error.strerror})'
  if not size:
    return 'empty file (0 bytes)'
  return f'not an image OpenCV can decode ({size} bytes)'


def _array_frame(frame: Any, index: int) -> np.ndarray:
  """An RGB array frame as BGR (the frame order of decoded files)."""
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
    raise ValueError(f'Frame {index} of the array input: expected an '
                     f'(H, W, 3) uint8 RGB image, got shape {frame.shape} '
                     f'dtype {frame.dtype}.')
  return np.ascontiguousarray(frame[..., ::-1])


class FrameReader:
  """Iterates the frames of an input, decoded in a background thread.

  Attributes:
    total: frames expected (a video's container count, None when unknown).
    unreadable: (file, frame index, reason) of each frame that could not be
      decoded (still yielded, image None); complete once iteration ends.
    fps: the video's frame rate (0 for images).
    decode_seconds: time the thread spent decoding.
  """

  def __init__(self, spec: InputSpec, queue_size: int = 8):
    self.spec = spec
    self.unreadable: list[tuple[str, int, str]] = []
    self.fps = 0.0
    self.decode_seconds = 0.0
    if spec.kind == 'arrays':
      self.total = (len(spec.frames) if isinstance(spec.frames, Sized)
                    else None)  # An iterator: unknown.
    else:
      self.total = len(spec.files) or None  # A video's: set below.
    self._queue = queue.Queue(maxsize=queue_size)
    self._stop = threading.Event()
    self._capture = None
    if spec.kind == 'video':
      # Opened here so an unreadable video fails in the caller's thread.
      self._capture = cv2.VideoCapture(spec.path)
      if not self._capture.isOpened():
        raise ValueError(f'OpenCV cannot open video {spec.path} (corrupt or '
                         'codec missing).')
      self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
      if not math.isfinite(self.fps) or self.fps <= 0:
        self.fps = 0.0
      count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
      self.total = int(count) if math.isfinite(count) and count > 0 else None
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name=f'decode {spec.name}')

  def __iter__(self) -> Iterator[Frame]:
    self._thread.start()
    try:
      while True:
        item = self._queue.get()
        if item is _END:
          return
        if isinstance(item, BaseException):
          raise item
        yield item
    finally:
      self._stop.set()
      while self._thread.is_alive():  # Unblock a thread waiting on put().
        try:
          self._queue.get_nowait()
        except queue.Empty:
          pass
        self._thread.join(timeout=0.05)

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self) -> None:
    try:
      frames = {'video': self._video_frames,
                'arrays': self._array_frames}.get(self.spec.kind,
                                                  self._image_frames)()
      for frame in frames:
        if not self._put(frame):
          return
      self._put(_END)
    except BaseException as error:  # pylint: disable=broad-except
      self._put(error)  # Raised again in the consumer's thread.
    finally:
      if self._capture is not None:
        self._capture.release()

  def _image_frames(self) -> Iterator[Frame]:
    for index, path in enumerate(self.spec.files, start=1):
      start = time.perf_counter()
      image = cv2.imread(path, cv2.IMREAD_COLOR)
      self.decode_seconds += time.perf_counter() - start
      error = None
      if image is None:
        error = _image_error(path)
        self.unreadable.append((path, index, error))
      yield Frame(index, 0.0, image, path, error)

  def _array_frames(self) -> Iterator[Frame]:
    for index, frame in enumerate(self.spec.frames, start=1):
      yield Frame(index, 0.0, _array_frame(frame, index), self.spec.path)

  def _video_frames(self) -> Iterator[Frame]:
    capture = self._capture
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    index = 0
    while True:
      start = time.perf_counter()
      ok, image = capture.read()
      self.decode_seconds += time.perf_counter() - start
      if not ok:
        # A failed read before the container's frame count is a corrupt
        # frame: count it, keep its row, try the next one.
        if index < expected - 1 and len(self.unreadable) < expected:
          index += 1
          error = 'frame could not be decoded'
          self.unreadable.append((self.spec.path, index, error))
          yield Frame(index, self._timestamp(index), None, self.spec.path,
                      error)
          continue
        return
      index += 1
      yield Frame(index, self._timestamp(index), image, self.spec.path)

  def _timestamp(self, index: int) -> float:
    return (index - 1) / self.fps if self.fps else 0.0


def format_value(value) -> str:
  """CSV text of one cell: '' for missing (None/nan), ints without '.0'."""
  if value is None:
    return ''
  if isinstance(value, (float, np.floating)):
    if math.isnan(value):
      return ''
    return f'{value:.6g}'
  return str(value)


class CsvWriter:
  """Writes rows atomically: `<path>.tmp` during the run, renamed at close."""

  def __init__(self, path: str, columns: Sequence[str]):
    self.path = path
    self.columns = list(columns)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._temp = path + '.tmp'
    self._file = open(self._temp, 'w', newline='', encoding='utf-8')
    self._writer = csv.writer(self._file)
    self._writer.writerow(self.columns)
    self.rows = 0

  def write(self, rows: Sequence[Sequence]) -> None:
    self._writer.writerows([[format_value(v) for v in row] for row in rows])
    self.rows += len(rows)

  def close(self, keep: bool = True) -> None:
    self._file.close()
    if keep:
      os.replace(self._temp, self.path)
    elif os.path.exists(self._temp):
      os.remove(self._temp)


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
  """(header, rows as text) of a predict CSV, without pandas."""
  with open(path, newline='', encoding='utf-8') as f:
    rows = list(csv.reader(f))
  return rows[0], rows[1:]


def _track_series(path: str, aus: Sequence[int]):
  """{face_id: (frames [T], probabilities [T, C])} from a predict CSV."""
  header, rows = read_csv(path)
  frame_col, id_col = header.index('frame'), header.index('face_id')
  columns = [header.index(f'AU{au:02d}_p') for au in aus]
  series = {}
  for row in rows:
    if row[columns[0]] == '':
      continue
    frames, values = series.setdefault(int(row[id_col]), ([], []))
    frames.append(int(row[frame_col]))
    values.append([float(row[c]) for c in columns])
  return {k: (np.array(f), np.array(v, np.float32).reshape(-1, len(aus)))
          for k, (f, v) in sorted(series.items())}


def plot_tracks(csv_path: str, png_path: str, aus: Sequence[int],
                max_tracks: int = 8) -> str | None:
  """PNG of each track's AU probabilities over time (one heat map per face).

  Rows are AUs, columns frames, colour the probability (0 white, 1 dark;
  frames without the face blank); the `max_tracks` longest tracks are
  drawn. Returns the path, or None when
  no face was found (nothing to draw).
  """
  plt = visualize.plt
  series = _track_series(csv_path, aus)
  if not series:
    return None
  ids = sorted(series, key=lambda k: -len(series[k][0]))[:max_tracks]
  ids.sort()
  figure, axes = plt.subplots(len(ids), 1, squeeze=False,
                              figsize=(10, 0.25 * len(aus) * len(ids) + 1.2))
  for axis, face_id in zip(axes[:, 0], ids):
    frames, values = series[face_id]
    # Frames where the face was not found stay blank (nan), so columns
    # line up with frame numbers.
    grid = np.full((frames[-1] - frames[0] + 1, len(aus)), np.nan)
    grid[frames - frames[0]] = values
    image = axis.imshow(grid.T, aspect='auto', cmap='Greys', vmin=0,
                        vmax=1, interpolation='nearest',
                        extent=(frames[0] - 0.5, frames[-1] + 0.5,
                                len(aus) - 0.5, -0.5))
    axis.set_yticks(range(len(aus)))
    axis.set_yticklabels([f'AU{au:02d}' for au in aus], fontsize=7)
    axis.set_ylabel(f'face {face_id}')
  axes[-1, 0].set_xlabel('frame')
  figure.colorbar(image, ax=axes[:, 0].tolist(), label='probability')
  figure.suptitle(os.path.basename(csv_path))
  return visualize._save(figure, png_path)  # pylint: disable=protected-access


def _rows_by_frame(csv_path: str, aus: Sequence[int]):
  """Iterates (frame, [(face_id, box, active AU names)]) in frame order."""
  header, rows = read_csv(csv_path)
  index = {name: header.index(name) for name in
           ('frame', 'face_id', 'success', 'face_x', 'face_y', 'face_width',
            'face_height')}
  active = [(header.index(f'AU{au:02d}_c'), f'AU{au:02d}') for au in aus]
  current, faces = None, []
  for row in rows:
    frame = int(row[index['frame']])
    if frame != current and current is not None:
      yield current, faces
      faces = []
    current = frame
    if row[index['success']] == '1':
      box = [float(row[index[k]]) for k in ('face_x', 'face_y', 'face_width',
                                            'face_height')]
      names = [name for column, name in active if row[column] == '1']
      faces.append((int(row[index['face_id']]), box, names))
  if current is not None:
    yield current, faces


def _draw(image: np.ndarray, faces) -> np.ndarray:
  image = image.copy()
  scale = max(0.4, min(image.shape[:2]) / 600)
  for face_id, (x, y, w, h), names in faces:
    colour = (0, 200, 255)
    cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), colour,
                  max(1, int(2 * scale)))
    lines = [f'id {face_id}'] + [' '.join(names[i:i + 4])
                                  for i in range(0, len(names), 4)]
    for k, text in enumerate(lines):
      cv2.putText(image, text, (int(x), int(y + h + (k + 1) * 18 * scale)),
                  cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour,
                  max(1, int(scale)), cv2.LINE_AA)
  return image


def annotate(spec: InputSpec, csv_path: str, output_dir: str,
             aus: Sequence[int]) -> list[str]:
  """Copies of the input with boxes, face ids and active AUs drawn.

  A video becomes `<name>_annotated.mp4` (MPEG-4 part 2, the codec every
  OpenCV build writes); an image `<name>_annotated.png`; a folder a folder
  `<name>_annotated/` of PNGs (`output_files`). Returns the paths written.
  An image that could not be decoded has no annotated copy.
  """
  by_frame = _rows_by_frame(csv_path, aus)
  reader = FrameReader(spec)
  written = []
  writer = None
  try:
    for frame, (index, faces) in zip(reader, by_frame):
      if frame.index != index:
        raise ValueError(f'{csv_path}: row for frame {index} where the input '
                         f'has frame {frame.index}; was it written from '
                         f'{spec.path}?')
      if frame.image is None:
        continue
      drawn = _draw(frame.image, faces)
      if spec.kind == 'video':
        if writer is None:
          path = os.path.join(output_dir, f'{spec.name}_annotated.mp4')
          height, width = drawn.shape[:2]
          writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'),
                                   reader.fps or 25.0, (width, height))
          if not writer.isOpened():
            raise ValueError(f'OpenCV cannot write video {path}.')
          written.append(path)
        writer.write(drawn)
      else:
        if spec.kind == 'image':
          path = os.path.join(output_dir, f'{spec.name}_annotated.png')
        else:
          folder = os.path.join(output_dir, f'{spec.name}_annotated')
          os.makedirs(folder, exist_ok=True)
          name = os.path.splitext(os.path.basename(frame.file))[0]
          path = os.path.join(folder, f'{name}.png')
        if not cv2.imwrite(path, drawn):
          raise ValueError(f'OpenCV cannot write image {path}.')
        written.append(path)
  finally:
    if writer is not None:
      writer.release()
  return written
