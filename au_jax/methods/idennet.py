"""IdenNet training: AU cross-entropy + face-clustering triplet loss.

Paper: ../shared/papers/idennet_poster.txt ("Proposed Method": "Cross-entropy
loss", "Triplet loss", "Total loss"); the loss details are those of the
authors' code (../shared/reference/architectures.md, IdenNet section):

  L = L_au + L_triplet                         (both weights 1)
  L_au: sigmoid cross-entropy over the known AU labels (-1 ignored), summed
        over AUs and averaged over the AU rows of the batch.
  L_triplet: mean over (anchor a, positive p, negative n) of
        max(0, margin + d(a, p) - d(a, n)),  d(x, y) = -cos(x, y),
        margin 0.5, on the L2-normalised fc5 embeddings; p is the other face
        of a's pair; up to 4 negatives per anchor, half the hardest (largest
        cosine to a) and half drawn at random from the other negatives.

Batches come from `train_batches`: AU frames and same-identity pairs from an
identity dataset (AUs -1). With `config.au_subject_pairs` (the authors'
code: "each batch half AU-labelled pairs, half identity-only pairs") the AU
frames come in same-subject pairs too (`au_subject_pairs`), each row's
identity its subject (AU_SUBJECT_IDENTITY_BASE + the subject's place in the
fold's training list), so the triplet term also pulls a subject's two AU
frames together and pushes other subjects' frames and the identity faces
away: the identity the fc6 - fc5 subtraction is meant to remove is that of
the AU subjects too. Without it, AU rows carry identity -1 and take no part
in the triplet term.

Data parallelism: `loss_fn` runs per device under pmap (axis
parallel.AXIS_NAME). Negatives are mined over the global batch (the
embeddings and identities of all devices, `lax.all_gather`), the random
ones drawn from a key that depends only on the batch's 'triplet_seed' and
the anchor's global row, and both losses are normalised by global counts
(`lax.psum`). Each device returns D x (its share of the global loss), so the
trainer's `pmean` of gradients and scalars equals the one-device values on
the concatenated batch (tested with 8 host devices).

Deviations, named: with config.au_subject_pairs False (the CPU and test
variants) AU rows are not paired by subject; the AU loss is averaged over AU
rows only, not over the whole mixed batch (so the identity half does not
halve the AU gradient).
"""


import argparse
import json
import os
import sys
from typing import Any, Iterator, Mapping, Sequence

from absl import logging
import grain
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from au_jax import losses
from au_jax import parallel
from au_jax import prepare
from au_jax import tables
from au_jax import visualize
from au_jax.data import device_transforms
from au_jax.data import folds
from au_jax.data import input_pipeline
from au_jax.data import records
from au_jax.data import transforms
from au_jax.predict import run as predict_run

Array = jax.Array


def _axis_size(axis_name: str) -> int | None:
  """Devices on `axis_name`, or None outside pmap (plain jit / eager)."""
  try:
    return lax.psum(1, axis_name)
  except NameError:
    return None


def select_negatives(similarity: Array, negative: Array, keys: Array,
                     num_negatives: int) -> Array:
  """Which negatives each anchor uses: half hardest, half random.

  Args:
    similarity: [A, N] cosine of anchor a with candidate n.
    negative: [A, N] bool, candidate n is another person than anchor a.
    keys: [A] PRNG keys, one per anchor (the random half).
    num_negatives: at most this many per anchor; num_negatives // 2 hardest
      (largest cosine = smallest distance -cos), the rest random among the
      remaining negatives. An anchor with fewer negatives uses them all.

  Returns:
    [A, N] float32 0/1 selection.
  """
  num_hardest = num_negatives // 2
  num_random = num_negatives - num_hardest
  size = similarity.shape[1]
  selected = jnp.zeros(similarity.shape, jnp.float32)
  if num_hardest:
    scores = jnp.where(negative, similarity, -jnp.inf)
    values, index = lax.top_k(scores, min(num_hardest, size))
    hits = jax.nn.one_hot(index, size) * (values > -jnp.inf)[..., None]
    selected = selected + hits.sum(axis=1)
  if num_random:
    draws = jax.vmap(lambda key: jax.random.uniform(key, (size,)))(keys)
    scores = jnp.where(negative & (selected == 0), draws, -jnp.inf)
    values, index = lax.top_k(scores, min(num_random, size))
    hits = jax.nn.one_hot(index, size) * (values > -jnp.inf)[..., None]
    selected = selected + hits.sum(axis=1)
  return selected


def triplet_terms(anchors: Array, anchor_identity: Array, anchor_row: Array,
                  candidates: Array, candidate_identity: Array, keys: Array,
                  margin: float = 0.5,
                  num_negatives: int = 4) -> tuple[Array, Array, Array]:
  """Hinge terms of the ranking loss for some anchors against candidates.

  Args:
    anchors: [A, E] unit-norm embeddings (this device's rows).
    anchor_identity: [A] int, -1 = unknown (not an anchor).
    anchor_row: [A] int, the anchor's row among the candidates (itself is
      never its own positive).
    candidates: [N, E] unit-norm embeddings (the global batch).
    candidate_identity: [N] int, -1 = unknown (neither positive nor
      negative).
    keys: [A] PRNG keys for the random negatives.
    margin: hinge margin (paper code: 0.5).
    num_negatives: per anchor (paper code: 4).

  Returns:
    (sum of hinge terms, number of (a, p, n) triplets, number of terms > 0),
    float32 scalars; the loss is sum / max(count, 1).
  """
  similarity = anchors @ candidates.T  # [A, N]; -similarity = distance
  known = (anchor_identity >= 0)[:, None] & (candidate_identity >= 0)[None]
  same = anchor_identity[:, None] == candidate_identity[None]
  not_self = anchor_row[:, None] != jnp.arange(candidates.shape[0])[None]
  positive = (known & same & not_self).astype(jnp.float32)
  negative = known & ~same
  chosen = select_negatives(lax.stop_gradient(similarity), negative, keys,
                            num_negatives)
  # hinge[a, p, n] = max(0, margin - cos(a, p) + cos(a, n))
  hinge = jax.nn.relu(margin - similarity[:, :, None]
                      + similarity[:, None, :])
  weight = positive[:, :, None] * chosen[:, None, :]
  return ((hinge * weight).sum(), weight.sum(),
          ((hinge > 0) * weight).sum())


def loss_fn(outputs: tuple[Array, dict[str, Array]], batch: dict[str, Array],
            config: ml_collections.ConfigDict
            ) -> tuple[Array, dict[str, Array]]:
  """IdenNet's total loss on this device's slice of a mixed batch.

  Args:
    outputs: (logits [B, C], aux) from au_jax.models.idennet.Model; aux
      'embedding' [B, E] (absent without the identity branch: no triplets).
    batch: 'au_occurrence' [B, C] int {1, 0, -1}; 'identity' [B] int (-1 =
      not in the triplet loss); optional 'is_identity_row' [B] bool (rows
      left out of the AU average) and 'triplet_seed' [B] int32 (same value
      in every row; seeds the random negatives; default config.seed).
    config: triplet_margin, num_negatives, triplet_weight, au_loss_weight.

  Returns:
    (loss, scalars) where loss and every scalar are D x this device's share
    of the global value, so their pmean over D devices is the global value.
  """
  logits, aux = outputs
  num_devices = _axis_size(parallel.AXIS_NAME)
  in_pmap = num_devices is not None
  num_devices = num_devices or 1
  psum = (lambda x: lax.psum(x, parallel.AXIS_NAME)) if in_pmap else (
      lambda x: x)

  rows = logits.shape[0]
  is_identity_row = batch.get('is_identity_row')
  au_rows = (jnp.ones([rows], jnp.float32) if is_identity_row is None
             else 1.0 - is_identity_row.astype(jnp.float32))
  per_example = losses.sigmoid_cross_entropy(
      logits, batch['au_occurrence'], normalise='none')
  au_loss = num_devices * (per_example * au_rows).sum() / jnp.maximum(
      psum(au_rows.sum()), 1.0)

  triplet_loss = jnp.zeros([], jnp.float32)
  num_triplets = active = jnp.zeros([], jnp.float32)
  weight = config.get('triplet_weight', 1.0)
  if 'embedding' in aux and weight:
    if 'identity' not in batch:
      raise ValueError(
          "IdenNet's triplet loss needs batch['identity'] (-1 for frames "
          'outside it); train with methods.idennet.train_batches, or set '
          'config.triplet_weight = 0.')
    embedding = aux['embedding'].astype(jnp.float32)
    identity = batch['identity'].astype(jnp.int32)
    if in_pmap:
      device = lax.axis_index(parallel.AXIS_NAME)
      candidates = lax.all_gather(embedding, parallel.AXIS_NAME, tiled=True)
      candidate_identity = lax.all_gather(identity, parallel.AXIS_NAME,
                                          tiled=True)
    else:
      device, candidates, candidate_identity = 0, embedding, identity
    global_row = device * rows + jnp.arange(rows)
    seed = (batch['triplet_seed'][0] if 'triplet_seed' in batch
            else config.get('seed', 0))
    base = jax.random.key(seed)
    keys = jax.vmap(lambda row: jax.random.fold_in(base, row))(global_row)
    total, count, positive_terms = triplet_terms(
        embedding, identity, global_row, candidates, candidate_identity, keys,
        margin=config.get('triplet_margin', 0.5),
        num_negatives=config.get('num_negatives', 4))
    global_count = jnp.maximum(psum(count), 1.0)
    triplet_loss = num_devices * total / global_count
    num_triplets = count
    active = num_devices * positive_terms / global_count

  loss = config.get('au_loss_weight', 1.0) * au_loss + weight * triplet_loss
  return loss, {
      'au_loss': au_loss,
      'triplet_loss': triplet_loss,
      # Share of triplets that still violate the margin.
      'triplet_active': active,
      'num_triplets': num_triplets * num_devices,
  }


def rows_per_device(config: ml_collections.ConfigDict,
                    devices: int) -> tuple[int, int]:
  """(AU frames, identity pairs) on each device for config.batch_size rows.

  config.identity_share of the rows are identity faces (the authors' code:
  half), rounded to whole pairs; at least one of each kind per device.
  """
  if config.batch_size % devices:
    raise ValueError(f'config.batch_size={config.batch_size} does not split '
                     f'over {devices} devices.')
  rows = config.batch_size // devices
  pairs = int(round(rows * config.identity_share / 2))
  pairs = min(max(pairs, 1), (rows - 1) // 2)
  if pairs < 1 or rows - 2 * pairs < 1:
    raise ValueError(
        f'config.batch_size={config.batch_size} gives {rows} rows per device;'
        ' IdenNet needs at least 3 (an AU frame and a pair) on each.')
  return rows - 2 * pairs, pairs


def train_batches(config: ml_collections.ConfigDict, data: Any, seed: int,
                  devices: int | None = None):
  """The trainer hook: mixed AU + identity-pair batches of config.batch_size.

  Args:
    config: the run config (identity_dataset, identity_dataset_config,
      identity_share, augmentation fields).
    data: input_pipeline.FoldData of the AU dataset's fold.
    seed: seeds both streams and the random negatives.
    devices: devices the batch is split over (default: local devices).

  Returns:
    MixedBatches (get_state / set_state give both streams' places).
  """
  devices = devices or parallel.device_count()
  per_device_au, per_device_pairs = rows_per_device(config, devices)
  if config.get('au_subject_pairs'):
    if per_device_au % 2:
      raise ValueError(
          f'config.au_subject_pairs: {per_device_au} AU rows per device '
          'cannot be whole same-subject pairs; make config.batch_size * (1 - '
          'identity_share) / devices even.')
    au_iterator = au_subject_pairs(config, data, per_device_au // 2 * devices,
                                   seed)
  else:
    au_config = config.copy_and_resolve_references()
    au_config.batch_size = per_device_au * devices
    au_iterator = iter(input_pipeline.train_loader(au_config, data, seed))
  identity_builder = prepare.ensure_built(
      config.identity_dataset, config.identity_dataset_config,
      config.get('data_dir'), config.get('manual_dir'))
  identity_iterator = identity_pairs(
      identity_builder, per_device_pairs * devices, len(config.aus),
      config.resize_size, config.crop_size, config.get('flip', True),
      tuple(config.pixel_mean), tuple(config.pixel_std), seed=seed,
      host_augmentation=config.get('host_augmentation', False))
  return mixed_batches(au_iterator, identity_iterator, per_device_au,
                              per_device_pairs, devices, seed=seed)


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


# AU subjects' identities in the triplet term: far above any identity
# dataset's (split indices < 2**30), so an AU subject never shares an
# identity with a face of the identity dataset.
AU_SUBJECT_IDENTITY_BASE = 1 << 30


def training_subject_rows(data: input_pipeline.FoldData) -> np.ndarray:
  """[R] place (0-based) in data.subjects.train of the subject of each
  record of the training source (records are stored one subject per split
  and read in the order of the list)."""
  if data.views or data.holdout or data.flow:
    raise ValueError('au_subject_pairs reads whole subject splits; it does '
                     'not select views, hold out videos or add flow.')
  counts = [data.builder.info.splits[s].num_examples
            for s in data.subjects.train]
  return np.repeat(np.arange(len(counts)), counts)


class _SubjectPartner:
  """Training record index -> it and another frame of its subject,
  transformed as the AU stream's frames (input_pipeline), each with
  'subject_identity' (AU_SUBJECT_IDENTITY_BASE + subject place)."""

  def __init__(self, source, subject_of_row: np.ndarray, operations):
    self.source, self.operations = source, operations
    self.subject_of_row = subject_of_row
    order = np.argsort(subject_of_row, kind='stable')
    self.rows_of = np.split(order, np.cumsum(
        np.bincount(subject_of_row))[:-1])

  def _frame(self, index: int, rng: np.random.Generator) -> Batch:
    element = self.source[index]
    for operation in self.operations:
      element = (operation.random_map(element, rng)
                 if isinstance(operation, grain.transforms.RandomMap)
                 else operation.map(element))
    element = {k: v for k, v in element.items()
               if np.asarray(v).dtype.kind in 'biuf'}
    element['subject_identity'] = np.int32(
        AU_SUBJECT_IDENTITY_BASE + int(self.subject_of_row[index]))
    return transforms.to_batchable(element)

  def __call__(self, index: int, rng: np.random.Generator) -> Batch:
    rows = self.rows_of[int(self.subject_of_row[index])]
    others = rows[rows != index]
    partner = int(others[rng.integers(len(others))])
    frames = [self._frame(int(index), rng), self._frame(partner, rng)]
    return {key: np.stack([f[key] for f in frames]) for key in frames[0]}


def au_subject_pairs(config: ml_collections.ConfigDict,
                     data: input_pipeline.FoldData, num_pairs: int,
                     seed: int):
  """An endless, checkpointable stream of same-subject AU frame pairs.

  Every training frame whose subject has another frame is visited once per
  epoch in a shuffled order (as the plain AU stream visits them), each with
  a partner drawn uniformly from its subject's other frames.

  Args:
    config: the run config (labels, resize / host augmentation as the AU
      stream, input_pipeline).
    data: the fold's data.
    num_pairs: pairs per batch (rows: 2 * num_pairs).
    seed: shuffles frames and draws partners and augmentation.

  Returns:
    A grain DatasetIterator of batches of 2 * num_pairs rows, a pair in
    adjacent rows: the AU stream's numeric fields and 'subject_identity'
    [2P] int32.
  """
  source = input_pipeline.split_source(data, 'train')
  subject_of_row = training_subject_rows(data)
  if len(subject_of_row) != len(source):
    raise ValueError(f'au_subject_pairs: {len(source)} training records, '
                     f'{len(subject_of_row)} counted over the subjects.')
  frames_of = np.bincount(subject_of_row)
  anchors = np.flatnonzero(frames_of[subject_of_row] >= 2)
  if len(anchors) < num_pairs:
    raise ValueError(f'au_subject_pairs: {len(anchors)} frames of subjects '
                     f'with two frames, fewer than {num_pairs} pairs.')
  operations = input_pipeline._record_transforms(  # pylint: disable=protected-access
      config, data, train=True)
  partner = _SubjectPartner(source, subject_of_row, operations)
  dataset = (grain.MapDataset.source(anchors).shuffle(seed=seed)
             .repeat(None).random_map(partner, seed=seed)
             .batch(num_pairs, drop_remainder=True).map(_flatten_pairs))
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
    # AU rows join the triplet term only as same-subject pairs
    # (`au_subject_pairs`: 'subject_identity'); else identity -1.
    au_identity = (np.asarray(au['subject_identity'], np.int32)
                   if 'subject_identity' in au
                   else np.full([d * a], -1, np.int32))
    au = dict(au, identity=au_identity,
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
    (on AU rows their 'subject_identity' when the AU stream gives one, as
    `au_subject_pairs` does, else -1), 'is_identity_row' [N] bool and 'triplet_seed' [N]
    int32 (one value per batch, drawn from (seed, batch number); it seeds the
    random negatives so that they are the same on any device count). AU
    labels on identity rows are all -1.
  """
  return MixedBatches(au_iterator, identity_iterator, per_device_au,
                      per_device_pairs, devices, seed)


# The poster's picture: t-SNE of the features the AU classifier sees.

def run_features(directory: str, split: str | None = None,
                 max_frames: int | None = 600,
                 data_dir: str | None = None) -> dict[str, np.ndarray]:
  """The features a trained run's AU classifier sees (`aux['features']`;
  IdenNet: fc6 - fc5, or fc6 without the identity branch), on `split` of
  the run's own fold ('test' by default, 'validation' for a fold-'all'
  run). Returns {'features' [N, D], 'subject' [N], 'sequence' [N],
  'labels' [N, C], 'aus' [C]} over an evenly spaced subset of at most
  `max_frames` frames."""
  run = predict_run.load_run(directory)
  config = run.config.copy_and_resolve_references()
  with config.unlocked():
    if data_dir:
      config.data_dir = data_dir
    config.num_workers = 0
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder,
                                  config.get('run_fold') or 1)
  split = split or ('test' if data.subjects.test else 'validation')

  @jax.jit
  def features_of(variables, batch):
    if batch['image'].dtype == np.uint8:
      batch = device_transforms.eval_preprocess(batch, config)
    _, aux = run.model.apply(variables, batch, train=False)
    return aux['features']

  out = {'features': [], 'subject': [], 'sequence': [], 'labels': []}
  for batch in input_pipeline.eval_batches(config, data, split, max_frames):
    mask = np.asarray(batch['mask'], bool)
    inputs = {k: v for k, v in batch.items()
              if k not in ('subject_code', 'sequence_code')}
    out['features'].append(np.asarray(
        features_of(run.variables, inputs), np.float32)[mask])
    out['subject'].append(transforms.decode_text_ids(
        np.asarray(batch['subject_code'])[mask]))
    out['sequence'].append(transforms.decode_text_ids(
        np.asarray(batch['sequence_code'])[mask]))
    out['labels'].append(np.asarray(batch['au_occurrence'])[mask])
  result = {k: np.concatenate(v) for k, v in out.items()}
  result['aus'] = np.asarray(config.aus)
  return result


def feature_tsne_figure(run_dirs: Mapping[str, str], au: int, path: str,
                        max_frames: int | None = 600,
                        data_dir: str | None = None) -> dict[str, float]:
  """`plot_feature_tsne` of runs ({title: run directory}) trained on the same
  fold (they read the same frames). Returns the neighbour rates."""
  collected = {title: run_features(d, max_frames=max_frames,
                                   data_dir=data_dir)
               for title, d in run_dirs.items()}
  first = next(iter(collected.values()))
  for title, got in collected.items():
    if not np.array_equal(got['subject'], first['subject']):
      raise ValueError(f'run {run_dirs[title]!r} read other frames than '
                       f'{next(iter(run_dirs.values()))!r}: compare runs of '
                       'the same dataset and fold.')
  aus = [int(a) for a in first['aus']]
  if au not in aus:
    raise ValueError(f'AU {au} is not among the runs\' AUs {aus}.')
  videos = np.char.add(np.char.add(first['subject'].astype(str), '/'),
                       first['sequence'].astype(str))
  return visualize.plot_feature_tsne(
      {title: got['features'] for title, got in collected.items()},
      first['subject'], first['labels'][:, aus.index(au)], au, path,
      videos=videos)


def main(argv: Sequence[str]) -> None:
  """python -m au_jax.methods.idennet tsne OUT.png TITLE=RUN_DIR [TITLE=RUN_DIR ...]
  [--au=12] [--max_frames=600] [--data_dir=DIR]"""
  parser = argparse.ArgumentParser(prog='python -m au_jax.methods.idennet')
  parser.add_argument('command', choices=['tsne'])
  parser.add_argument('out')
  parser.add_argument('runs', nargs='+', help='TITLE=RUN_DIR')
  parser.add_argument('--au', type=int, default=12)
  parser.add_argument('--max_frames', type=int, default=600)
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--json', default=None,
                      help='also write each run\'s neighbour rate and its '
                      'triplet_active (first logged, mean of the last 50 '
                      'steps) to this JSON file')
  args = parser.parse_args(argv)
  run_dirs = {}
  for item in args.runs:
    if '=' not in item:
      parser.error(f'{item!r}: write TITLE=RUN_DIR.')
    title, directory = item.split('=', 1)
    run_dirs[title] = directory
  rates = feature_tsne_figure(run_dirs, args.au, args.out, args.max_frames,
                              args.data_dir)
  summary = {}
  for title, rate in rates.items():
    print(f'{title}: nearest frame in another video shows the same '
          f'subject for {100 * rate:.1f}% of frames')
    summary[title] = dict(same_subject_neighbour=float(rate),
                          **triplet_activity(run_dirs[title]))
  if args.json:
    text = json.dumps(summary, indent=1)
    tables.write_atomic(args.json, lambda f: f.write(text + '\n'))
    print(f'Written {args.json}')
  print(f'Written {args.out}')


def triplet_activity(directory: str, last: int = 50) -> dict[str, float]:
  """The share of triplets that violate the margin ('triplet_active' in
  the run's metrics.jsonl): at the first logged step, and the mean over the
  logged steps of the last `last` steps; {} for a run without the triplet
  loss."""
  path = os.path.join(directory, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    logged = [(r['step'], r['triplet_active']) for r in map(json.loads, f)
              if 'triplet_active' in r]
  if not logged:
    return {}
  end = logged[-1][0]
  tail = [v for step, v in logged if step > end - last]
  return {'triplet_active_first': float(logged[0][1]),
          'triplet_active_last': float(np.mean(tail))}


if __name__ == '__main__':
  main(sys.argv[1:])
