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

Batches come from `train_batches` (au_jax/mixing.py): AU frames (identity
-1, no triplets) and same-identity pairs from an identity dataset (AUs -1).

Data parallelism: `loss_fn` runs per device under pmap (axis
parallel.AXIS_NAME). Negatives are mined over the global batch (the
embeddings and identities of all devices, `lax.all_gather`), the random
ones drawn from a key that depends only on the batch's 'triplet_seed' and
the anchor's global row, and both losses are normalised by global counts
(`lax.psum`). Each device returns D x (its share of the global loss), so the
trainer's `pmean` of gradients and scalars equals the one-device values on
the concatenated batch (tested with 8 host devices).

Deviations, named: AU rows are not paired by subject (see mixing.py), and the
AU loss is averaged over AU rows only, not over the whole mixed batch (so the
identity half does not halve the AU gradient).
"""

from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import ml_collections

from au_jax import losses
from au_jax import parallel

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
    mixing.MixedBatches (get_state / set_state give both streams' places).
  """
  # Imported here: the data stack is not needed to compute the loss.
  from au_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from au_jax import mixing  # pylint: disable=g-import-not-at-top
  from au_jax import prepare  # pylint: disable=g-import-not-at-top

  devices = devices or parallel.device_count()
  per_device_au, per_device_pairs = rows_per_device(config, devices)
  au_config = config.copy_and_resolve_references()
  au_config.batch_size = per_device_au * devices
  au_iterator = iter(input_pipeline.train_loader(au_config, data, seed))
  identity_builder = prepare.ensure_built(
      config.identity_dataset, config.identity_dataset_config,
      config.get('data_dir'), config.get('manual_dir'))
  identity_iterator = mixing.identity_pairs(
      identity_builder, per_device_pairs * devices, len(config.aus),
      config.resize_size, config.crop_size, config.get('flip', True),
      tuple(config.pixel_mean), tuple(config.pixel_std), seed=seed,
      host_augmentation=config.get('host_augmentation', False))
  return mixing.mixed_batches(au_iterator, identity_iterator, per_device_au,
                              per_device_pairs, devices, seed=seed)
