"""Readers for the AU label and landmark files of the real datasets.

Formats follow ../shared/reference/datasets.md as the owners ship them; every
reader raises a ValueError naming the file (and line) it cannot parse.
"""

import collections
import re
from typing import Sequence

import numpy as np
import scipy.io

UNKNOWN = -1


def _au_of_column(name: str) -> int | None:
  """'12' / 'AU12' / 'AU012' / ' au12_c ' -> 12; None when no number."""
  found = re.search(r'\d+', name)
  return int(found.group()) if found else None


def _number(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None


def _integer(path: str, line: int, what: str, text: str) -> int:
  """int(text) for '1' or '1.0'; a ValueError naming file and line else."""
  value = _number(text.strip())
  if value is None or not value.is_integer():
    raise ValueError(f'{path} line {line}: {what} {text.strip()!r} is not an '
                     'integer.')
  return int(value)


def check_frame_order(path: str, frames: Sequence[int],
                      line_numbers: Sequence[int], contiguous: bool,
                      notes: collections.Counter | None = None) -> None:
  """Frame numbers must rise; by exactly 1 where rows pair with video frames.

  Args:
    path: the label file (for the error).
    frames: frame numbers in file order.
    contiguous: rows pair with video frames by position (DISFA, FERA 2017),
      so a gap or repeat would shift every later label: an error. Otherwise
      (BP4D pairs by number) a gap is counted in notes['label_frame_gaps'].
    line_numbers: the file line of each frame (for the error).
    notes: gets the gap count when not contiguous.
  """
  for row in range(1, len(frames)):
    step = int(frames[row]) - int(frames[row - 1])
    if step == 1:
      continue
    if step < 1 or contiguous:
      raise ValueError(
          f'{path} line {line_numbers[row]}: frame {int(frames[row])} follows '
          f'frame {int(frames[row - 1])}; frame numbers must '
          + ('rise by 1 (row i labels video frame i).' if contiguous else
             'rise.'))
    if notes is not None:
      notes['label_frame_gaps'] += 1


def read_occurrence_csv(
    path: str, aus: Sequence[int], unknown_codes: Sequence[int] = (9,),
    contiguous: bool = False,
) -> tuple[np.ndarray, np.ndarray, collections.Counter]:
  """Per-frame AU occurrence from a BP4D / FERA 2017 style CSV.

  Column 0 is the frame number; every other column whose header holds a
  number is that AU. The header is detected, never assumed: BP4D's integer
  header 0..99, BP4D re-releases' named header (~35 columns) and FERA 2017's
  named header all work. A first line that is neither (e.g. a data row: the
  header was lost) is an error, since reading a data row as AU numbers would
  relabel every column.

  Args:
    path: the CSV file.
    aus: record AU order; AUs missing from the header are -1 for all frames.
    unknown_codes: values meaning "not coded" (BP4D 9) -> -1.
    contiguous: frame numbers must rise by exactly 1 (FERA 2017 pairs row i
      with video frame i); else they must rise, gaps counted.

  Returns:
    frames: [N] int64 frame numbers; occurrence: [N, C] int8 1/0/-1;
    notes: Counter of oddities ('au_missing_from_header', 'label_code_<v>_as_
    unknown' for integer codes other than 0, 1 and the unknown codes,
    'label_frame_gaps').

  Raises:
    ValueError naming the file and line for an unexpected header, a
    non-integer value, a row of the wrong length or frames out of order.
  """
  with open(path, newline='') as f:
    lines = [(number, line.strip()) for number, line in enumerate(f, 1)]
  lines = [(number, line) for number, line in lines if line]
  if not lines:
    raise ValueError(f'AU label file {path} is empty.')
  header_line, header_text = lines[0]
  header = [h.strip() for h in header_text.split(',')]
  numeric = [_number(h) for h in header]
  if all(v is not None for v in numeric):
    if numeric != list(range(len(header))):
      raise ValueError(
          f'{path} line {header_line}: unexpected first line '
          f'{header_text[:60]!r}: expected a header (the integers 0, 1, 2, '
          '... or named columns such as "Frame,AU01,..."); a data row here '
          'means the header is missing.')
  elif numeric[0] is not None:
    raise ValueError(f'{path} line {header_line}: unexpected first line '
                     f'{header_text[:60]!r}: a named header starts with the '
                     'frame column, not a number.')
  columns = {}
  for index, name in enumerate(header[1:], start=1):
    au = _au_of_column(name)
    if au is not None and au not in columns:
      columns[au] = index
  if not columns:
    raise ValueError(f'AU label file {path}: header {header_text[:80]!r} '
                     'names no AU columns.')
  notes = collections.Counter()
  missing = [au for au in aus if au not in columns]
  if missing:
    notes['au_missing_from_header'] += len(missing)
  rows = lines[1:]
  frames = np.zeros(len(rows), np.int64)
  occurrence = np.full((len(rows), len(aus)), UNKNOWN, np.int8)
  for row, (number, line) in enumerate(rows):
    values = line.split(',')
    if len(values) != len(header):
      raise ValueError(f'{path} line {number}: {len(values)} values, header '
                       f'has {len(header)}.')
    frames[row] = _integer(path, number, 'frame number', values[0])
    for c, au in enumerate(aus):
      if au not in columns:
        continue
      value = _integer(path, number, f'AU{au} code', values[columns[au]])
      if value in (0, 1):
        occurrence[row, c] = value
      elif value not in unknown_codes:
        notes[f'label_code_{value}_as_unknown'] += 1
  check_frame_order(path, frames, [number for number, _ in rows],
                    contiguous, notes)
  return frames, occurrence, notes


def read_frame_value_lines(
    path: str, contiguous: bool = True,
    valid: tuple[float, float] | None = None, integer: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """DISFA `SN001_au<N>.txt` / FERA intensity: `frame,value` lines.

  Neither format has a header, so a first line that is not `frame,value` is
  an error like any other line (skipping it would shift DISFA's pairing of
  line i with video frame i).

  Args:
    path: the file.
    contiguous: frame numbers must rise by exactly 1 (DISFA pairs by line).
    valid: (low, high) allowed values (inclusive), or None for any.
    integer: values must be integers (intensity codes 0-5, 9).

  Returns:
    frames: [N] int64; values: [N] float32 (in file order).

  Raises:
    ValueError naming the file and line for a malformed line, a non-integer
    or out-of-range value, or frame numbers out of order.
  """
  frames, values, line_numbers = [], [], []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      parts = re.split(r'[,\s]+', line)
      if len(parts) != 2:
        raise ValueError(f'{path} line {number}: expected "frame,value", got '
                         f'{line[:80]!r}.')
      frame = _integer(path, number, 'frame number', parts[0])
      value = (_integer(path, number, 'value', parts[1]) if integer else
               _number(parts[1]))
      if value is None:
        raise ValueError(f'{path} line {number}: value {parts[1]!r} is not a '
                         'number.')
      if valid is not None and not valid[0] <= value <= valid[1]:
        raise ValueError(f'{path} line {number}: value {value} is outside '
                         f'{valid[0]:g}..{valid[1]:g}.')
      line_numbers.append(number)
      frames.append(frame)
      values.append(value)
  check_frame_order(path, frames, line_numbers, contiguous)
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
