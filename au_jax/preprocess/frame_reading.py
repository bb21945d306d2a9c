"""Reading a job's frames and label rows for the real-dataset builders.

A builder's `process_job` finds its frames on disk (`sorted_frames`,
`frame_number`, `require_file`), decodes them (`read_frame`, or
`labelled_video_frames`, which pairs video frame i with label row i through
`paired_labels`) and records what it could not use: `name_problem` adds a
problem the build summary names one by one (damaged frame, label/video
length mismatch, missing label file).

Damaged frames (a truncated JPEG/PNG, a video frame that fails to decode)
are never stored: each is a counted skip named in the summary, and more than
$AU_JAX_MAX_DAMAGED_FRACTION (default 0.01) of a subject's frames is an
error (`check_damaged`, applied by every build path), since a download that
damaged that much is better fetched again.
"""

import collections
from collections.abc import Iterable, Iterator, Sequence
import os
import re
from typing import Any

import numpy as np

from au_jax.preprocess import video as video_lib


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
