"""Readers for the AU label and landmark files of the real datasets.

Formats follow ../shared/reference/datasets.md as the owners ship them; every
reader raises a ValueError naming the file (and line) it cannot parse.
"""

import collections
import re
from typing import Sequence

import numpy as np

UNKNOWN = -1


def _au_of_column(name: str) -> int | None:
  """'12' / 'AU12' / 'AU012' / ' au12_c ' -> 12; None when no number."""
  found = re.search(r'\d+', name)
  return int(found.group()) if found else None


def read_occurrence_csv(
    path: str, aus: Sequence[int], unknown_codes: Sequence[int] = (9,),
) -> tuple[np.ndarray, np.ndarray, collections.Counter]:
  """Per-frame AU occurrence from a BP4D / FERA 2017 style CSV.

  Column 0 is the frame number; every other column whose header holds a
  number is that AU. The header is detected, never assumed: BP4D's integer
  header 0..99, BP4D re-releases' named header (~35 columns) and FERA 2017's
  named header all work.

  Args:
    path: the CSV file.
    aus: record AU order; AUs missing from the header are -1 for all frames.
    unknown_codes: values meaning "not coded" (BP4D 9) -> -1.

  Returns:
    frames: [N] int64 frame numbers; occurrence: [N, C] int8 1/0/-1;
    notes: Counter of oddities ('au_missing_from_header', 'label_code_<v>').
  """
  with open(path, newline='') as f:
    lines = [line.strip() for line in f]
  lines = [line for line in lines if line]
  if not lines:
    raise ValueError(f'AU label file {path} is empty.')
  header = [h.strip() for h in lines[0].split(',')]
  columns = {}
  for index, name in enumerate(header[1:], start=1):
    au = _au_of_column(name)
    if au is not None and au not in columns:
      columns[au] = index
  if not columns:
    raise ValueError(f'AU label file {path}: header {lines[0][:80]!r} names '
                     'no AU columns.')
  notes = collections.Counter()
  missing = [au for au in aus if au not in columns]
  if missing:
    notes['au_missing_from_header'] += len(missing)
  frames = np.zeros(len(lines) - 1, np.int64)
  occurrence = np.full((len(lines) - 1, len(aus)), UNKNOWN, np.int8)
  for row, line in enumerate(lines[1:]):
    values = line.split(',')
    if len(values) != len(header):
      raise ValueError(f'{path} line {row + 2}: {len(values)} values, header '
                       f'has {len(header)}.')
    try:
      frames[row] = int(float(values[0]))
      for c, au in enumerate(aus):
        if au not in columns:
          continue
        value = int(float(values[columns[au]]))
        if value in (0, 1):
          occurrence[row, c] = value
        elif value not in unknown_codes:
          notes[f'label_code_{value}_as_unknown'] += 1
    except ValueError:
      raise ValueError(f'{path} line {row + 2}: cannot parse {line[:80]!r}.'
                       ) from None
  return frames, occurrence, notes


def read_frame_value_lines(path: str) -> tuple[np.ndarray, np.ndarray]:
  """DISFA `SN001_au<N>.txt` / FERA intensity: `frame,value` lines.

  A first line that is not numeric is taken as a header and skipped.

  Returns:
    frames: [N] int64; values: [N] float32 (in file order: DISFA pairs line i
    with video frame i).
  """
  frames, values = [], []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      parts = re.split(r'[,\s]+', line)
      try:
        frame, value = int(float(parts[0])), float(parts[1])
      except (ValueError, IndexError):
        if number == 1:
          continue  # Header line.
        raise ValueError(f'{path} line {number}: expected "frame,value", got '
                         f'{line[:80]!r}.') from None
      frames.append(frame)
      values.append(value)
  return np.asarray(frames, np.int64), np.asarray(values, np.float32)


def read_unbc_facs(path: str, aus: Sequence[int]
                   ) -> tuple[np.ndarray, np.ndarray, list[int]]:
  """An UNBC-McMaster `<frame>_facs.txt` file.

  One line per active AU: `AU intensity side1 side2` in scientific notation;
  an empty file means no AU is active. AU43 (eyes closed) is binary and
  carries intensity 0 while present, so presence is "listed", not
  "intensity > 0".

  Returns:
    occurrence: [C] int8 1/0 (the file codes every AU of the set).
    intensity: [C] float32, 0 where not listed.
    ignored: AUs listed that are not in `aus` (counted by the caller).
  """
  occurrence = np.zeros(len(aus), np.int8)
  intensity = np.zeros(len(aus), np.float32)
  ignored = []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      parts = line.split()
      if not parts:
        continue
      try:
        au, level = int(round(float(parts[0]))), float(parts[1])
      except (ValueError, IndexError):
        raise ValueError(f'{path} line {number}: expected "AU intensity '
                         f'side1 side2", got {line.strip()[:80]!r}.') from None
      if au not in aus:
        ignored.append(au)
        continue
      occurrence[aus.index(au)] = 1
      intensity[aus.index(au)] = level
  return occurrence, intensity, ignored


def read_points_text(path: str) -> np.ndarray:
  """[N, 2] (x, y) from a text file of whitespace/comma separated numbers
  (UNBC `_aam.txt`: one `x y` pair per line, scientific notation)."""
  with open(path) as f:
    text = f.read()
  try:
    numbers = np.asarray([float(t) for t in re.split(r'[,\s]+', text.strip())
                          if t], np.float32)
  except ValueError:
    raise ValueError(f'Landmark file {path} holds a non-number.') from None
  if numbers.size % 2:
    raise ValueError(f'Landmark file {path} holds {numbers.size} numbers; '
                     'expected x, y pairs.')
  return numbers.reshape(-1, 2)


def read_points_mat(path: str, field: str = 'pts') -> np.ndarray:
  """[N, 2] (x, y) from a MATLAB file's `field` (DISFA `frame_lm/*.mat`)."""
  import scipy.io  # pylint: disable=g-import-not-at-top  (only DISFA)
  try:
    content = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for bad files.
    raise ValueError(f'Cannot read MATLAB landmark file {path}: {e}') from e
  if field not in content:
    raise ValueError(f'Landmark file {path} has no field {field!r}; fields: '
                     f'{sorted(k for k in content if not k.startswith("_"))}.')
  points = np.asarray(content[field], np.float32)
  if points.ndim != 2 or 2 not in points.shape:
    raise ValueError(f'{path}: {field} has shape {points.shape}, expected '
                     '[N, 2].')
  return points if points.shape[1] == 2 else points.T
