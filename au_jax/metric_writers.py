"""Scalars to a JSON-lines file and TensorBoard event files, TF-free.

clu.metric_writers imports TensorFlow, which au_jax keeps optional, so the
base install writes TensorBoard events with tensorboardX instead.
"""

import json
import os
from typing import Mapping

from absl import logging
import numpy as np


class MetricWriter:
  """Writes `metrics.jsonl` (one JSON object per call) and TB events."""

  def __init__(self, directory: str):
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, 'metrics.jsonl')
    self._file = open(self.path, 'a', encoding='utf-8')
    try:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tensorboard = tensorboardX.SummaryWriter(directory)
    except ImportError:  # Optional: JSON lines still carry everything.
      logging.warning('tensorboardX is not installed: no TensorBoard events.')
      self._tensorboard = None

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._file.write(json.dumps({'step': int(step), **scalars}) + '\n')
    self._file.flush()
    if self._tensorboard is not None:
      for key, value in scalars.items():
        self._tensorboard.add_scalar(key, value, int(step))

  def close(self) -> None:
    self._file.close()
    if self._tensorboard is not None:
      self._tensorboard.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *unused_exc) -> None:
    self.close()
