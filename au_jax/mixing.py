"""Batches that mix AU frames with same-identity face pairs (IdenNet).

IdenNet (../shared/papers/idennet_poster.txt, "Proposed Method"; the
authors' code per ../shared/reference/architectures.md) trains on batches
that hold AU-labelled frames and pairs of faces of one person from a
subject-rich identity dataset (AUs unknown), so the face-clustering loss has
a positive for every identity anchor and other people as negatives.

`mixed_batches` joins two streams: the trainer's ordinary AU loader and an
identity-pair stream (`identity_pairs`). Under pmap every device gets its
own slice of the global batch, so the rows are laid out device by device,
each slice holding `per_device_au` AU frames then `per_device_pairs` pairs
(2 rows each, adjacent): no device is left without AU rows or without pairs.
The joint state (both iterators' states and the batch counter) is
checkpointed as one JSON byte string, like a grain DataLoader's.

Deviation from the authors' code: there AU frames also come in same-subject
pairs (half the batch); here the AU stream is the trainer's ordinary
shuffled loader, so AU rows carry identity -1 and only the identity-dataset
pairs feed the triplet loss.
"""

import json
from typing import Any, Iterator, Mapping

from absl import logging
import grain
import numpy as np
import tensorflow_datasets as tfds

from au_jax import folds
from au_jax import records
from au_jax import transforms

Batch = dict[str, np.ndarray]


def triplet_seed(seed: int, step: int) -> np.int32:
  """A non-negative int32 that seeds batch `step`'s random negatives."""
  state = np.random.SeedSequence([int(seed), int(step)]).generate_state(1)
  return np.int32(int(state[0]) & 0x7FFFFFFF)


class _PairOf:
  """Index of an identity -> two distinct faces of it, transformed.

  Picks the two faces with the element's own rng (grain derives it from the
  pipeline seed and the element's position), so a pair is reproducible and
  a person shows different pairs in different epochs.
  """

  def __init__(self, source, starts: np.ndarray, counts: np.ndarray,
               num_aus: int, resize: int, crop: int, flip: bool,
               mean, std, host_augmentation: bool = False):
    self.source, self.starts, self.counts = source, starts, counts
    self.num_aus = num_aus
    # Like the AU stream (input_pipeline): by default the host only resizes
    # (uint8) and the jitted step crops, mirrors and normalises.
    self.host_augmentation = host_augmentation
    self.resize = transforms.Resize(resize)
    self.crop_flip = transforms.RandomCropFlip(resize, crop, flip)
    self.normalize = transforms.Normalize(mean, std)

  def _face(self, index: int, rng: np.random.Generator) -> Batch:
    record = self.source[index]
    element = {
        'image': record['image'],
        'landmarks': record.get(
            'landmarks', np.full([records.NUM_LANDMARKS, 2], records.UNKNOWN,
                                 np.float32)),
        'identity': np.int32(record['identity']),
        # Identity faces carry no AU labels, whatever the source stores.
        'au_occurrence': np.full([self.num_aus], records.UNKNOWN, np.int32),
    }
    if not self.host_augmentation:
      return transforms.to_batchable(self.resize.map(element))
    element = self.crop_flip.random_map(element, rng)
    return transforms.to_batchable(self.normalize.map(element))

  def __call__(self, identity: int, rng: np.random.Generator) -> Batch:
    start, count = int(self.starts[identity]), int(self.counts[identity])
    first, second = rng.choice(count, size=2, replace=False)
    faces = [self._face(start + int(i), rng) for i in (first, second)]
    return {key: np.stack([face[key] for face in faces]) for key in faces[0]}


def _flatten_pairs(batch: Batch) -> Batch:
  """[P, 2, ...] -> [2P, ...]: the two faces of a pair stay adjacent."""
  return {key: value.reshape((-1,) + value.shape[2:])
          for key, value in batch.items()}


def identity_pairs(builder: tfds.core.DatasetBuilder, num_pairs: int,
                   num_aus: int, resize: int, crop: int, flip: bool,
                   mean, std, seed: int, subjects=None,
                   host_augmentation: bool = False):
  """An endless, checkpointable stream of same-identity face pairs.

  Every identity (a split of `builder`, or `subjects`) with at least two
  faces is visited once per epoch in a shuffled order; each visit draws two
  distinct faces of it. Identities with one face cannot form a pair and are
  left out, counted in the log.

  Args:
    builder: a built TFDS builder whose records carry 'image' and
      'identity' (synthetic_au/identities; later CelebA, VGGFace2, LFW).
    num_pairs: pairs per batch (rows: 2 * num_pairs).
    num_aus: width of the all-unknown 'au_occurrence' the rows get.
    resize, crop, flip, mean, std: the AU stream's augmentation, so both
      streams' images match.
    seed: shuffles identities and picks faces.
    subjects: splits to read (default: all).

  Returns:
    A grain DatasetIterator (get_state/set_state) of batches: 'image'
    [2P, crop, crop, 3] float32, 'landmarks' [2P, 68, 2], 'identity' [2P]
    int32, 'au_occurrence' [2P, num_aus] int32 all -1.
  """
  subjects = sorted(builder.info.splits) if subjects is None else list(
      subjects)
  counts = np.array([builder.info.splits[s].num_examples for s in subjects])
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  usable = counts >= 2
  if not usable.any():
    raise ValueError(
        f'{builder.name}/{builder.builder_config.name}: no identity has two '
        'faces, so no same-identity pair can be drawn.')
  if not usable.all():
    logging.warning('%s: %d of %d identities have fewer than 2 faces and '
                    'give no pairs.', builder.name, int((~usable).sum()),
                    len(subjects))
  if usable.sum() < num_pairs:
    raise ValueError(
        f'{builder.name}: {int(usable.sum())} identities with two faces, '
        f'fewer than the {num_pairs} pairs a batch needs.')
  source = builder.as_data_source(split=folds.split_spec(subjects))
  pair_of = _PairOf(source, starts[usable], counts[usable], num_aus, resize,
                    crop, flip, mean, std, host_augmentation)
  dataset = (grain.MapDataset.range(int(usable.sum()))
             .shuffle(seed=seed).repeat(None)
             .random_map(pair_of, seed=seed)
             .batch(num_pairs, drop_remainder=True)
             .map(_flatten_pairs))
  return iter(dataset.to_iter_dataset())


def _encode_state(state: Any) -> dict[str, Any]:
  # grain's DataLoader hands out bytes, a DatasetIterator a dict.
  if isinstance(state, bytes):
    return {'bytes': state.decode()}
  return {'dict': state}


def _decode_state(state: Mapping[str, Any]) -> Any:
  return state['bytes'].encode() if 'bytes' in state else state['dict']


class MixedBatches:
  """Iterator over mixed AU + identity-pair batches (see `mixed_batches`)."""

  def __init__(self, au_iterator: Iterator[Batch],
               identity_iterator: Iterator[Batch], per_device_au: int,
               per_device_pairs: int, devices: int, seed: int = 0):
    if min(per_device_au, per_device_pairs, devices) < 1:
      raise ValueError(
          f'mixed_batches needs per_device_au, per_device_pairs and devices '
          f'>= 1, got {per_device_au}, {per_device_pairs}, {devices}.')
    self.au_iterator, self.identity_iterator = au_iterator, identity_iterator
    self.per_device_au, self.per_device_pairs = per_device_au, per_device_pairs
    self.devices, self.seed = devices, seed
    self.step = 0

  def __iter__(self) -> 'MixedBatches':
    return self

  def __next__(self) -> Batch:
    au, pairs = next(self.au_iterator), next(self.identity_iterator)
    d, a, p = self.devices, self.per_device_au, 2 * self.per_device_pairs
    for name, batch, rows in (('AU', au, d * a), ('identity', pairs, d * p)):
      got = len(batch['image'])
      if got != rows:
        raise ValueError(
            f'mixed_batches: the {name} stream gave {got} rows; '
            f'{d} devices x {rows // d} need {rows}.')
    num_aus = au['au_occurrence'].shape[1]
    if pairs['au_occurrence'].shape[1] != num_aus:
      raise ValueError(
          f'mixed_batches: identity rows have {pairs["au_occurrence"].shape[1]}'
          f' AU columns, AU rows {num_aus}.')
    au = dict(au, identity=np.full([d * a], -1, np.int32),
              is_identity_row=np.zeros([d * a], bool))
    pairs = dict(pairs, identity=np.asarray(pairs['identity'], np.int32),
                 au_occurrence=np.full_like(au['au_occurrence'][:1], -1)
                 .repeat(d * p, 0),
                 is_identity_row=np.ones([d * p], bool))
    out = {}
    for key in sorted(set(au) & set(pairs)):
      left, right = np.asarray(au[key]), np.asarray(pairs[key])
      if left.dtype.kind not in 'biuf' or left.shape[1:] != right.shape[1:]:
        continue  # Host-only text ids, or a field only one stream shapes.
      joined = np.concatenate([left.reshape((d, a) + left.shape[1:]),
                               right.reshape((d, p) + right.shape[1:])
                               .astype(left.dtype)], axis=1)
      out[key] = joined.reshape((d * (a + p),) + left.shape[1:])
    out['triplet_seed'] = np.full([d * (a + p)],
                                  triplet_seed(self.seed, self.step), np.int32)
    self.step += 1
    return out

  def get_state(self) -> bytes:
    """Both streams' positions and the batch counter, as JSON bytes."""
    return json.dumps({
        'step': self.step,
        'au': _encode_state(self.au_iterator.get_state()),
        'identity': _encode_state(self.identity_iterator.get_state()),
    }).encode()

  def set_state(self, state: bytes | str) -> None:
    state = json.loads(state)
    self.step = int(state['step'])
    self.au_iterator.set_state(_decode_state(state['au']))
    self.identity_iterator.set_state(_decode_state(state['identity']))


def mixed_batches(au_iterator: Iterator[Batch],
                  identity_iterator: Iterator[Batch], per_device_au: int,
                  per_device_pairs: int, devices: int,
                  seed: int = 0) -> MixedBatches:
  """Joins an AU stream and an identity-pair stream, device slice by slice.

  Args:
    au_iterator: batches of devices * per_device_au AU frames ('image',
      'au_occurrence' [N, C], ...), with get_state/set_state (a grain
      DataLoader iterator).
    identity_iterator: batches of devices * per_device_pairs pairs, the two
      faces of a pair in adjacent rows ('identity' filled), e.g.
      `identity_pairs`; with get_state/set_state.
    per_device_au, per_device_pairs: rows of each kind on every device.
    devices: number of devices the batch is split over (parallel.shard).
    seed: seeds 'triplet_seed'.

  Returns:
    An iterator of batches of devices * (per_device_au + 2 per_device_pairs)
    rows: the numeric fields both streams share, plus 'identity' [N] int32
    (-1 on AU rows), 'is_identity_row' [N] bool and 'triplet_seed' [N]
    int32 (one value per batch, drawn from (seed, batch number); it seeds the
    random negatives so that they are the same on any device count). AU
    labels on identity rows are all -1.
  """
  return MixedBatches(au_iterator, identity_iterator, per_device_au,
                      per_device_pairs, devices, seed)
