"""Scalars to a JSON-lines file and TensorBoard event files, TF-free.

clu.metric_writers imports TensorFlow, which au_jax keeps optional, so the
base install writes TensorBoard events with tensorboardX instead.

A run resumed from its step-S checkpoint redoes the steps after S: the
writer, told S, first drops the rows of those steps (written before the
run was killed), and a row written again at step S itself (the test scores
of a finished run tested again) replaces the earlier one, so metrics.jsonl
holds each step's rows once.
"""

import json
import os
import tempfile
from typing import Any, Callable, Mapping

from absl import logging
import numpy as np


def _signature(row: Mapping[str, Any]) -> tuple[int, tuple[str, ...]]:
  """A row's step and scalar names: the rows a run writes once."""
  return int(row['step']), tuple(sorted(row))


def _filter_rows(path: str, keep: Callable[[dict[str, Any]], bool]
                 ) -> dict[str, int]:
  """Keeps the rows of the JSON-lines file `path` for which `keep` is true.

  Lines that do not parse (the torn last line of a killed writer) are
  dropped too. The kept rows go to a temporary file that replaces `path`
  (os.replace), so a kill meanwhile leaves the old file or the new one,
  never a half-written one; an unchanged file is not rewritten.

  Returns:
    {'kept', 'dropped' (rows `keep` refused), 'unreadable'} line counts.
  """
  counts = {'kept': 0, 'dropped': 0, 'unreadable': 0}
  if not os.path.exists(path):
    return counts
  kept = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        _signature(row)
      except (ValueError, KeyError, TypeError):
        counts['unreadable'] += 1
        continue
      if keep(row):
        kept.append(line if line.endswith('\n') else line + '\n')
      else:
        counts['dropped'] += 1
  counts['kept'] = len(kept)
  if counts['dropped'] or counts['unreadable']:
    handle, temporary = tempfile.mkstemp(
        prefix='.metrics.', dir=os.path.dirname(path) or '.')
    try:
      with os.fdopen(handle, 'w', encoding='utf-8') as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
      os.replace(temporary, path)
    except BaseException:
      os.remove(temporary)
      raise
  return counts


def drop_rows_after(path: str, step: int) -> dict[str, int]:
  """Removes the rows of steps after `step` (and unreadable lines) from the
  JSON-lines file `path`, atomically; returns the counts of _filter_rows."""
  return _filter_rows(path, lambda row: int(row['step']) <= step)


class MetricWriter:
  """Writes `metrics.jsonl` (one JSON object per call) and TB events.

  `start_step`: the step the run starts or resumes from (0 for a fresh
  start). Rows of later steps already in metrics.jsonl come from a killed
  earlier attempt that the run redoes: they are dropped with a log line
  counting them (TensorBoard hides them too, with `purge_step`). A row
  written again at `start_step` with the same names replaces the earlier
  one. None keeps every row.
  """

  def __init__(self, directory: str, start_step: int | None = None):
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, 'metrics.jsonl')
    self._rows_at_start = set()
    if start_step is not None:
      counts = drop_rows_after(self.path, start_step)
      if counts['dropped'] or counts['unreadable']:
        logging.warning(
            '%s: dropped %d row(s) of steps after %d (redone after a '
            'restart) and %d unreadable line(s); %d rows kept.', self.path,
            counts['dropped'], start_step, counts['unreadable'],
            counts['kept'])
      if os.path.exists(self.path):
        with open(self.path, encoding='utf-8') as f:
          signatures = {_signature(json.loads(line)) for line in f
                        if line.strip()}
        self._rows_at_start = {s for s in signatures if s[0] == start_step}
    self._file = open(self.path, 'a', encoding='utf-8')
    try:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tensorboard = tensorboardX.SummaryWriter(
          directory,
          purge_step=None if start_step is None else start_step + 1)
    except ImportError:  # Optional: JSON lines still carry everything.
      logging.warning('tensorboardX is not installed: no TensorBoard events.')
      self._tensorboard = None

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    row = {'step': int(step),
           **{k: float(np.asarray(v)) for k, v in scalars.items()}}
    signature = _signature(row)
    if signature in self._rows_at_start:
      self._rows_at_start.discard(signature)
      self._file.close()
      _filter_rows(self.path, lambda kept: _signature(kept) != signature)
      logging.info('%s: replaced the earlier row of step %d (%s).',
                   self.path, step, ', '.join(sorted(scalars)))
      self._file = open(self.path, 'a', encoding='utf-8')
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()
    if self._tensorboard is not None:
      for key, value in row.items():
        if key != 'step':
          self._tensorboard.add_scalar(key, value, int(step))

  def close(self) -> None:
    self._file.close()
    if self._tensorboard is not None:
      self._tensorboard.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *unused_exc) -> None:
    self.close()
