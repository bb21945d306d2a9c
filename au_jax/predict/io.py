"""Inputs and outputs of `au_jax.predict`: frames in, CSV, plot, annotation.

- `expand_input`: a video, an image or a folder of images becomes one
  `InputSpec` (one CSV); a missing file, an empty folder or an unknown file
  type is a one-line ValueError naming the path.
- `FrameReader`: decodes frames in a background thread into a small bounded
  queue, so decoding overlaps detection and the model while memory stays
  flat with video length. A frame that cannot be decoded is still a `Frame`
  (image None), counted in `unreadable`.
- `plot_tracks` and `annotate` read the finished CSV back (and, for
  annotate, decode the input a second time), so neither needs the video or
  its predictions in memory.
"""

import csv
import dataclasses
import math
import os
import queue
import threading
import time
from typing import Iterator, Sequence

import cv2
import numpy as np
from au_jax import visualize

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """One input of a predict call.

  Attributes:
    path: as given.
    kind: 'video', 'image' or 'folder' (images in name order = frames).
    files: the image files of a folder (one for 'image', empty for video).
    stem: output name (`<stem>.csv`).
  """
  path: str
  kind: str
  files: tuple[str, ...]
  stem: str


def expand_input(path: str) -> InputSpec:
  """Classifies `path`; raises ValueError (one line) when it is unusable."""
  stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  if os.path.isdir(path):
    files = tuple(sorted(
        os.path.join(path, name) for name in os.listdir(path)
        if name.lower().endswith(IMAGE_EXTENSIONS)))
    if not files:
      raise ValueError(f'Folder {path} holds no images '
                       f'({", ".join(IMAGE_EXTENSIONS)}).')
    return InputSpec(path, 'folder', files, stem)
  if not os.path.exists(path):
    raise ValueError(f'Input {path} does not exist.')
  extension = os.path.splitext(path)[1].lower()
  if extension in VIDEO_EXTENSIONS:
    return InputSpec(path, 'video', (), stem)
  if extension in IMAGE_EXTENSIONS:
    return InputSpec(path, 'image', (path,), stem)
  raise ValueError(f'Input {path}: unknown file type {extension!r}; expected '
                   f'a video ({", ".join(VIDEO_EXTENSIONS)}), an image or a '
                   'folder of images.')


@dataclasses.dataclass
class Frame:
  """A decoded frame.

  Attributes:
    index: 1-based frame number.
    timestamp: seconds ((index - 1) / fps; 0 for images).
    image: [H, W, 3] uint8 BGR, or None when the frame could not be decoded.
    file: the file it came from (the video, or the image in a folder).
  """
  index: int
  timestamp: float
  image: np.ndarray | None
  file: str


_END = object()


class FrameReader:
  """Iterates the frames of an input, decoded in a background thread.

  Attributes (valid once iteration ends):
    unreadable: frames that could not be decoded (they were still yielded,
      image None).
    fps: the video's frame rate (0 for images).
    decode_seconds: time the thread spent decoding.
  """

  def __init__(self, spec: InputSpec, queue_size: int = 8):
    self.spec = spec
    self.unreadable = 0
    self.fps = 0.0
    self.decode_seconds = 0.0
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
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name=f'decode {spec.stem}')

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
      frames = (self._video_frames() if self.spec.kind == 'video'
                else self._image_frames())
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
      if image is None:
        self.unreadable += 1
      yield Frame(index, 0.0, image, path)

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
        if index < expected - 1 and self.unreadable < expected:
          index += 1
          self.unreadable += 1
          yield Frame(index, self._timestamp(index), None, self.spec.path)
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

  A video becomes `<stem>_annotated.mp4` (MPEG-4 part 2, the codec every
  OpenCV build writes); an image `<stem>_annotated.png`; a folder a folder
  `<stem>_annotated/` of PNGs. Returns the paths written.
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
          path = os.path.join(output_dir, f'{spec.stem}_annotated.mp4')
          height, width = drawn.shape[:2]
          writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'),
                                   reader.fps or 25.0, (width, height))
          if not writer.isOpened():
            raise ValueError(f'OpenCV cannot write video {path}.')
          written.append(path)
        writer.write(drawn)
      else:
        folder = (output_dir if spec.kind == 'image' else
                  os.path.join(output_dir, f'{spec.stem}_annotated'))
        os.makedirs(folder, exist_ok=True)
        name = os.path.splitext(os.path.basename(frame.file))[0]
        path = os.path.join(folder, f'{name}_annotated.png'
                            if spec.kind == 'image' else f'{name}.png')
        if not cv2.imwrite(path, drawn):
          raise ValueError(f'OpenCV cannot write image {path}.')
        written.append(path)
  finally:
    if writer is not None:
      writer.release()
  return written
