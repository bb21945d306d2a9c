"""grain pipelines over TFDS array_record data sources, one fold at a time.

The dataset's records are stored one split per subject; a fold picks its
train / validation / test subjects at read time (`folds.fold_subjects`) and
the pipeline opens `builder.as_data_source('S01+S02+...')` over them.
Training batches come from a grain `DataLoader` (shuffled, endless, worker
processes on a real run, 0 in tests) whose iterator state is checkpointed;
evaluation reads every frame once, in order, padding the last batch and
marking the padding in `mask`.
"""

import dataclasses
from typing import Iterator

from absl import logging
import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from au_jax import aus as aus_lib
from au_jax import folds
from au_jax import parallel
from au_jax import prepare
from au_jax import transforms


@dataclasses.dataclass(frozen=True)
class FoldData:
  """A fold's subjects and how to read them."""
  builder: tfds.core.DatasetBuilder
  subjects: folds.FoldSubjects
  label_indices: np.ndarray  # [C] columns of config.aus in the records.


def open_dataset(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The dataset builder, built first when it is absent and can be built."""
  return prepare.ensure_built(config.dataset, config.dataset_config,
                              config.get('data_dir'), config.get('manual_dir'))


def available_subjects(builder: tfds.core.DatasetBuilder) -> list[str]:
  return sorted(builder.info.splits.keys())


def fold_data(config: ml_collections.ConfigDict,
              builder: tfds.core.DatasetBuilder, fold: int) -> FoldData:
  subjects = folds.fold_subjects(
      config.dataset, fold, available_subjects(builder),
      num_validation=config.num_validation_subjects,
      strict=config.get('strict_folds', True))
  logging.info('Fold %d: train %s, validation %s, test %s', fold,
               subjects.train, subjects.validation, subjects.test)
  return FoldData(builder, subjects,
                  aus_lib.label_indices(config.dataset, config.aus))


def _source(builder: tfds.core.DatasetBuilder, subjects) -> grain.sources.RandomAccessDataSource:
  if not subjects:
    raise ValueError('No subjects to read.')
  return builder.as_data_source(split=folds.split_spec(subjects))


def _record_transforms(config: ml_collections.ConfigDict, data: FoldData,
                       train: bool) -> list[grain.transforms.Transformation]:
  geometry = (transforms.RandomCropFlip(config.resize_size, config.crop_size,
                                        flip=config.get('flip', True))
              if train else
              transforms.CenterCrop(config.resize_size, config.crop_size))
  return [
      transforms.SelectLabels(data.label_indices),
      geometry,
      transforms.Normalize(mean=tuple(config.pixel_mean),
                           std=tuple(config.pixel_std)),
  ]


def train_loader(config: ml_collections.ConfigDict, data: FoldData,
                 seed: int) -> grain.DataLoader:
  """An endless shuffled loader of [batch_size, ...] numpy batches."""
  source = _source(data.builder, data.subjects.train)
  if len(source) < config.batch_size:
    raise ValueError(
        f'Only {len(source)} training frames for a batch of '
        f'{config.batch_size}; lower config.batch_size.')
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shuffle=True, num_epochs=None, seed=seed,
      shard_options=grain.sharding.NoSharding())
  operations = _record_transforms(config, data, train=True) + [
      grain.transforms.Batch(config.batch_size, drop_remainder=True)]
  return grain.DataLoader(
      data_source=source, sampler=sampler, operations=operations,
      worker_count=config.num_workers,
      worker_buffer_size=config.get('worker_buffer_size', 2))


class _Subset:
  """Random access to `indices` of a data source."""

  def __init__(self, source, indices: np.ndarray):
    self._source = source
    self._indices = [int(i) for i in indices]

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int):
    return self._source[self._indices[index]]


def num_frames(data: FoldData, split: str) -> int:
  subjects = getattr(data.subjects, split)
  return sum(data.builder.info.splits[s].num_examples for s in subjects)


def eval_batches(config: ml_collections.ConfigDict, data: FoldData,
                 split: str, max_frames: int | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every frame of `split` ('validation' or 'test') once, in record order.

  Batches have `config.eval_batch_size` rows; the last is padded and `mask`
  [B] is False on padding rows, so every frame counts exactly once.
  """
  subjects = getattr(data.subjects, split)
  source = _source(data.builder, subjects)
  if max_frames is not None and max_frames < len(source):
    # An evenly spaced subset (every k-th frame), for quick validation.
    step = len(source) / max_frames
    source = _Subset(source, np.floor(np.arange(max_frames) * step))
  dataset = grain.MapDataset.source(source)
  for transform in _record_transforms(config, data, train=False):
    dataset = dataset.map(transform)
  dataset = dataset.batch(config.eval_batch_size, drop_remainder=False)
  iterator = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=max(1, config.get('eval_read_threads', 2)),
      prefetch_buffer_size=2))
  for batch in iterator:
    batch = {k: v for k, v in batch.items()
             if np.asarray(v).dtype.kind in 'biuf'}
    yield parallel.pad_batch(batch, config.eval_batch_size)
