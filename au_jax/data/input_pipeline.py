"""grain pipelines over TFDS array_record data sources, one fold at a time.

The dataset's records are stored one split per subject; a fold picks its
train / validation / test subjects at read time (`folds.fold_subjects`) and
the pipeline opens `builder.as_data_source('S01+S02+...')` over them.
Training batches come from a grain `DataLoader` (shuffled, endless, worker
processes on a real run, 0 in tests) whose iterator state is checkpointed;
evaluation reads every frame once, in order, padding the last batch and
marking the padding in `mask`. `model_batches` gives those evaluation
batches as the model takes them (cropped and normalised), for a notebook.

Loader workers start from a script without a main guard and from a notebook
kernel alike: they do not re-run the main module
(`au_jax.spawn_without_main_for`), and absl flags that nobody parsed keep
their defaults (grain reads its own flags when workers start).
"""

import dataclasses
import os
import functools
import hashlib
from typing import Iterator

from absl import flags
from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

import au_jax
from au_jax import aus as aus_lib
from au_jax import distributed
from au_jax.data import device_transforms
from au_jax.data import folds
from au_jax.data import records
from au_jax import parallel
from au_jax import prepare
from au_jax.data import transforms
from au_jax.preprocess import flow as flow_lib


@dataclasses.dataclass(frozen=True)
class FoldData:
  """A fold's subjects and how to read them.

  `views`: only frames of these views are read (None = all views).
  `holdout`: for within-identity holdouts (`classify` on 'identity'), every
  `holdout`-th sequence of each training subject is kept out of 'train' and
  read as 'validation' and 'test' instead (0 = subject-exclusive splits).
  """
  builder: tfds.core.DatasetBuilder
  subjects: folds.FoldSubjects
  label_indices: np.ndarray  # [C] columns of config.aus in the records.
  views: tuple[int, ...] | None = None
  holdout: int = 0
  # config.flow: records gain 'flow' [R, R, 3] uint8 (AUNets' flow image to
  # the next frame of the video and view, R = flow_size); see _FlowSource.
  flow: bool = False
  flow_size: int | None = None
  flow_method: str = 'dis'


def open_dataset(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The dataset builder, built first when it is absent and can be built.

  In a multi-process job process 0 builds (or finds) it first and the
  others open it after a barrier, so no two processes build into one
  data_dir; a node whose data_dir is not shared builds its own copy then."""
  def ensure():
    return prepare.ensure_built(config.dataset, config.dataset_config,
                                config.get('data_dir'),
                                config.get('manual_dir'))
  if jax.process_count() == 1:
    return ensure()
  builder = ensure() if distributed.is_primary() else None
  distributed.barrier('au_jax: dataset ready')
  return builder or ensure()


def available_subjects(builder: tfds.core.DatasetBuilder) -> list[str]:
  return sorted(builder.info.splits.keys())


def fold_data(config: ml_collections.ConfigDict,
              builder: tfds.core.DatasetBuilder, fold: int) -> FoldData:
  subjects = folds.fold_subjects(
      config.dataset, fold, available_subjects(builder),
      num_validation=config.num_validation_subjects,
      strict=config.get('strict_folds', True),
      protocol=folds.config_protocol(config))
  logging.info('Fold %s: train %s, validation %s, test %s', fold,
               subjects.train, subjects.validation, subjects.test)
  views = tuple(int(v) for v in config.get('views') or ()) or None
  holdout = 0
  if config.get('method') == 'classify' and config.get(
      'classify_field') == 'identity':
    # Identities of test subjects are never seen in training, so identity
    # classification is scored on held-out videos of the training people.
    holdout = int(config.get('identity_holdout_every', 4) or 4)
  flow = bool(config.get('flow'))
  if flow and config.get('host_augmentation'):
    raise ValueError('config.flow needs the device augmentation path '
                     '(host_augmentation=False): only it crops and mirrors '
                     "batch['flow'] with the image.")
  return FoldData(builder, subjects,
                  aus_lib.label_indices(config.dataset, config.aus),
                  views, holdout, flow=flow,
                  flow_size=config.get('resize_size') if flow else None,
                  flow_method=config.get('flow_method') or 'dis')


def _source(builder: tfds.core.DatasetBuilder,
            subjects) -> grain.sources.RandomAccessDataSource:
  if not subjects:
    raise ValueError('No subjects to read.')
  try:
    source = builder.as_data_source(split=folds.split_spec(subjects))
    if len(source):
      source[len(source) - 1]  # The end of the last file must read too.
    return source
  except RuntimeError as error:
    raise records.DamagedDatasetError(
        _name_damaged_split(builder, subjects, error)) from error


def _name_damaged_split(builder, subjects, error) -> str:
  """The first subject split whose records cannot be read, with its files."""
  directory = builder.data_dir
  for subject in subjects:
    try:
      source = builder.as_data_source(split=subject)
      for index in (0, len(source) - 1):
        source[index]
    except RuntimeError as subject_error:
      files = sorted(os.path.basename(f) for f in os.listdir(directory)
                     if f'-{subject}.' in f)
      return (f'{directory}: the records of subject {subject} ({files}) '
              f'cannot be read ({str(subject_error).splitlines()[0][:160]}); '
              'the file is damaged (truncated copy, full disk?). Rebuild: '
              f'{records.rebuild_command(builder)}.')
  return f'{directory}: cannot read the dataset files ({error}).'


_ID_FIELDS = ('subject', 'sequence', 'view', 'frame_index')


@functools.lru_cache(maxsize=32)
def _record_ids(builder: tfds.core.DatasetBuilder,
                subjects: tuple[str, ...]) -> dict[str, np.ndarray]:
  """Per-record ids of `subjects` in data-source order, read without
  decoding images (cached: selecting views or held-out videos reads them
  once per run)."""
  source = builder.as_data_source(
      split=folds.split_spec(subjects),
      decoders={'image': tfds.decode.SkipDecoding()})
  columns = {field: [] for field in _ID_FIELDS}
  for index in range(len(source)):
    record = source[index]
    for field in _ID_FIELDS:
      value = record[field]
      columns[field].append(value.decode('utf-8') if isinstance(value, bytes)
                            else value)
  return {k: np.asarray(v) for k, v in columns.items()}


def oversampled_rows(positive: np.ndarray) -> np.ndarray:
  """[N'] row indices repeating each positive row round(#neg / #pos)
  times (at least once), negatives once, in the source's order.

  Args:
    positive: [N] bool, a row's label for the run's AU(s) is present.
  """
  positive = np.asarray(positive, bool)
  count = int(positive.sum())
  times = max(1, round((positive.size - count) / max(count, 1)))
  return np.repeat(np.arange(positive.size), np.where(positive, times, 1))


def _train_positives(data: FoldData, source) -> np.ndarray:
  """[len(source)] bool: the training record has any of the run's AUs
  present (label 1), read without decoding images."""
  labels = data.builder.as_data_source(
      split=folds.split_spec(data.subjects.train),
      decoders={'image': tfds.decode.SkipDecoding()})
  present = np.array([
      (np.asarray(labels[i]['au_occurrence'])[data.label_indices] == 1).any()
      for i in range(len(labels))], bool)
  indices = getattr(source, '_indices', None)
  return present if indices is None else present[np.asarray(indices)]


def split_source(data: FoldData, split: str):
  """The random-access source of `split` ('train', 'validation', 'test'),
  restricted to `data.views` and the within-identity holdout."""
  subjects = (data.subjects.train if data.holdout and split != 'train'
              else getattr(data.subjects, split))
  source = _source(data.builder, subjects)
  if data.flow:  # Before any selection: a frame's neighbour is always read.
    source = _FlowSource(source, _record_ids(data.builder, tuple(subjects)),
                         data.flow_size, data.flow_method)
  if not data.views and not data.holdout:
    return source
  ids = _record_ids(data.builder, tuple(subjects))
  keep = np.ones(len(source), bool)
  if data.views:
    keep &= np.isin(ids['view'], data.views)
  if data.holdout:
    # Every `holdout`-th video of each subject (in sorted order) is held out.
    held = np.zeros(len(source), bool)
    for subject in np.unique(ids['subject']):
      rows = ids['subject'] == subject
      videos = sorted(set(ids['sequence'][rows]))
      held_out = set(videos[data.holdout - 1::data.holdout]) or {videos[-1]}
      held |= rows & np.isin(ids['sequence'], list(held_out))
    keep &= ~held if split == 'train' else held
  indices = np.flatnonzero(keep)
  if not indices.size:
    raise ValueError(f'No frames of {split} subjects {list(subjects)} are '
                     f'left after selecting views {data.views}.')
  return _Subset(source, indices)


def _record_transforms(config: ml_collections.ConfigDict, data: FoldData,
                       train: bool) -> list[grain.transforms.Transformation]:
  """Labels in config order, then the image work done on the host.

  By default (`config.host_augmentation` False) the host only resizes the
  decoded face and keeps it uint8; random crop, mirror and normalisation
  run inside the jitted step (device_transforms.py, deterministic per
  seed, step and device). `host_augmentation=True` keeps the earlier
  all-on-host float32 path (same pixels; used to compare them).
  """
  labels = transforms.SelectLabels(data.label_indices)
  if not config.get('host_augmentation', False):
    return [labels, transforms.Resize(config.resize_size)]
  geometry = (transforms.RandomCropFlip(config.resize_size, config.crop_size,
                                        flip=config.get('flip', True))
              if train else
              transforms.CenterCrop(config.resize_size, config.crop_size))
  return [
      labels,
      geometry,
      transforms.Normalize(mean=tuple(config.pixel_mean),
                           std=tuple(config.pixel_std)),
  ]


def train_loader(config: ml_collections.ConfigDict, data: FoldData,
                 seed: int) -> grain.DataLoader:
  """An endless shuffled loader of [batch_size, ...] numpy batches.

  In a P-process job (au_jax/distributed.py) each process loads its
  batch_size / P rows of every global batch: all processes walk the same
  shuffled record order and grain's process sharding gives process p the
  positions p, p + P, p + 2P, ...; so global batch k holds the same records
  as batch k of a one-process run (rows interleaved by process).
  """
  source = split_source(data, 'train')
  if config.get('oversample_positives'):
    # AUNets (aunets_2017.txt sec. 4.1): positives repeated until they
    # balance the negatives; each repeat gets its own random crop.
    source = _Subset(source, oversampled_rows(_train_positives(data,
                                                               source)))
  if len(source) < config.batch_size:
    raise ValueError(
        f'Only {len(source)} training frames for a batch of '
        f'{config.batch_size}; lower config.batch_size.')
  processes, index = jax.process_count(), jax.process_index()
  if config.batch_size % processes:
    raise ValueError(
        f'config.batch_size={config.batch_size} does not split over '
        f'{processes} processes; make it a multiple of {processes}.')
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shuffle=True, num_epochs=None, seed=seed,
      shard_options=grain.sharding.NoSharding())
  operations = _record_transforms(config, data, train=True) + [
      grain.transforms.Batch(config.batch_size // processes,
                             drop_remainder=True)]
  # One process keeps the loader (and its checkpointed state) as it was.
  shard_options = (grain.sharding.ShardOptions(
      shard_index=index, shard_count=processes, drop_remainder=True)
                   if processes > 1 else None)
  if config.num_workers:
    _prepare_grain_workers()
  return grain.DataLoader(
      data_source=source, sampler=sampler, operations=operations,
      worker_count=config.num_workers, shard_options=shard_options,
      worker_buffer_size=config.get('worker_buffer_size', 2))


# grain names its worker processes so (ProcessPrefetchDatasetIterator).
_GRAIN_WORKER_PREFIX = 'grain-process-prefetch'


def _prepare_grain_workers() -> None:
  """Lets grain start workers from any script or notebook.

  grain reads absl flags (--grain_enable_multiprocess_worker_profiling)
  when its workers start, which fails where nobody parsed flags (a script
  without app.run, a notebook): they are marked parsed and keep their
  defaults. Its workers get the pipeline by value (cloudpickle), so they
  need not re-run the caller's script, which may lack a main guard.
  """
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  au_jax.spawn_without_main_for(_GRAIN_WORKER_PREFIX)


class _Subset:
  """Random access to `indices` of a data source."""

  def __init__(self, source, indices: np.ndarray):
    self._source = source
    self._indices = [int(i) for i in indices]

  def __len__(self) -> int:
    return len(self._indices)

  def __repr__(self) -> str:
    # grain compares the data source's repr when it restores a checkpointed
    # iterator: make it a function of the source and the chosen records,
    # never of the object's address.
    digest = hashlib.sha256(
        np.asarray(self._indices, np.int64).tobytes()).hexdigest()[:16]
    return (f'_Subset({self._source!r}, {len(self._indices)} records, '
            f'indices sha256 {digest})')

  def __getitem__(self, index: int):
    return self._source[self._indices[index]]


class _FlowSource:
  """Records of `source` with 'flow' added, computed from the neighbouring
  record: AUNets' flow image (preprocess/flow.py) from the frame to the next
  frame of its video and view, at `size` x `size` uint8 like the resized
  face. The last frame of a video reuses the flow into it from the previous
  frame; a one-frame video gets zero motion (flow.neighbour_pairs; both are
  counted in `counts` and logged).

  Computed here rather than stored by the builders: on synthetic_au the
  stored flow would add a rebuild and disk for every dataset while the
  training step, not the flow, bounds img/s (figures and command in the
  README, AUNets section; benchmarks/aunets_flow.py).
  """

  def __init__(self, source, ids: dict[str, np.ndarray], size: int | None,
               method: str = 'dis'):
    self._source, self._size, self._method = source, size, method
    self._first, self._second, self.counts = flow_lib.neighbour_pairs(
        ids['subject'], ids['sequence'], ids['view'], ids['frame_index'])
    logging.info('Optical flow from neighbouring records: %d frames in %d '
                 'videos; %d last frames reuse the flow into them, %d '
                 'one-frame videos get zero motion.', self.counts['frames'],
                 self.counts['videos'], self.counts['last_frames'],
                 self.counts['single_frames'])

  def __len__(self) -> int:
    return len(self._source)

  def __repr__(self) -> str:
    return f'_FlowSource({self._source!r}, {self._method}, {self._size})'

  def __getitem__(self, index: int):
    record = self._source[index]
    first, second = int(self._first[index]), int(self._second[index])
    images = [record['image'] if i == index else self._source[i]['image']
              for i in (first, second)]
    record = dict(record)
    record['flow'] = flow_lib.flow_image(
        np.asarray(images[0]),
        None if first == second else np.asarray(images[1]),
        self._method, self._size)
    return record


def num_frames(data: FoldData, split: str) -> int:
  return len(split_source(data, split))


def eval_batches(config: ml_collections.ConfigDict, data: FoldData,
                 split: str, max_frames: int | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every frame of `split` ('validation' or 'test') once, in record order.

  Batches have `config.eval_batch_size` rows; the last is padded and `mask`
  [B] is False on padding rows, so every frame counts exactly once.

  In a P-process job each process reads only its block (`_ProcessBlock`) in
  batches of eval_batch_size / P rows; every process yields the same number
  of batches (pmap runs in step on all of them) and the caller gathers the
  rows (fold_evaluation.Evaluator), padding masked.
  """
  source = split_source(data, split)
  if max_frames is not None and max_frames < len(source):
    # An evenly spaced subset (every k-th frame), for quick validation.
    step = len(source) / max_frames
    source = _Subset(source, np.floor(np.arange(max_frames) * step))
  batch_size, processes = config.eval_batch_size, jax.process_count()
  if processes > 1:
    if batch_size % processes:
      raise ValueError(
          f'config.eval_batch_size={batch_size} does not split over '
          f'{processes} processes; make it a multiple of {processes}.')
    batch_size //= processes
    source = _ProcessBlock(source, jax.process_index(), processes)
  dataset = grain.MapDataset.source(source).map(transforms.KeepTextIds())
  for transform in _record_transforms(config, data, train=False):
    dataset = dataset.map(transform)
  dataset = dataset.batch(batch_size, drop_remainder=False)
  iterator = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=max(1, config.get('eval_read_threads', 2)),
      prefetch_buffer_size=2))
  for batch in iterator:
    batch = {k: v for k, v in batch.items()
             if np.asarray(v).dtype.kind in 'biuf'}
    yield parallel.pad_batch(batch, batch_size)


def model_batches(config: ml_collections.ConfigDict, data: FoldData,
                  split: str = 'test', max_frames: int | None = None
                  ) -> Iterator[dict[str, jax.Array]]:
  """`eval_batches` as the model takes them: cropped and normalised.

  For a notebook or script: `model.apply(variables, batch, train=False)`
  gives (logits, aux) for each batch, as evaluation computes them.

  Args:
    config: the run's config (crop_size, resize_size, pixel_mean/std,
      eval_batch_size, ...).
    data: from `fold_data(config, open_dataset(config), fold)`.
    split: 'train', 'validation' or 'test'; every frame once, in order.
    max_frames: an evenly spaced subset of at most this many frames.

  Yields:
    Batches of config.eval_batch_size rows on the default device: 'image'
    [B, S, S, 3] in config.dtype (S = config.crop_size; the centre crop,
    normalised: device_transforms.eval_preprocess), 'landmarks' [B, 68, 2]
    in that crop, 'au_occurrence' [B, C] (1, 0, -1 unknown; C =
    len(config.aus)), 'mask' [B] (False on the last batch's padding),
    'subject_code' / 'sequence_code' (transforms.decode_text_ids), and
    'flow' where config.flow.
  """
  preprocess = jax.jit(
      functools.partial(device_transforms.eval_preprocess, config=config))
  for batch in eval_batches(config, data, split, max_frames):
    if batch['image'].dtype == np.uint8:  # Else host_augmentation did it.
      yield preprocess(batch)
    else:
      yield jax.device_put(batch)


class _ProcessBlock:
  """Process `index` of `count`'s contiguous block of a source's records:
  ceil(N / count) records on every process, the last block(s) filled up
  with copies of record 0 marked `mask` False. Concatenating the blocks in
  process order gives records 0..N-1 in order, then the padding."""

  def __init__(self, source, index: int, count: int):
    self._source = source
    self._size = -(-len(source) // count)
    self._start = index * self._size
    self._real = max(0, min(self._size, len(source) - self._start))

  def __len__(self) -> int:
    return self._size

  def __getitem__(self, index: int):
    if not 0 <= index < self._size:
      raise IndexError(f'{index} outside a block of {self._size} records.')
    real = index < self._real
    record = dict(self._source[self._start + index if real else 0])
    record['mask'] = np.bool_(real)
    return record
