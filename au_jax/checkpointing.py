"""Run directories and orbax checkpoints (latest + best by validation F1).

A checkpoint holds three items written atomically by orbax (temporary folder,
then rename, so a killed run never leaves a half-written step):
  state: the unreplicated TrainState (params, batch_stats, optimiser state);
  data:  the grain iterator state, so a restarted run reads on from where the
         killed one stopped;
  meta:  the config fingerprint the state was trained with; restoring into a
         run with a different architecture/label set is refused clearly.
"""

import hashlib
import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = 'val_mean_f1'

# Config fields that change the shape or meaning of the saved state.
_FINGERPRINT_FIELDS = ('dataset', 'model_name', 'model', 'aus', 'crop_size',
                       'optimizer')


def run_dir(config: ml_collections.ConfigDict, workdir: str,
            fold: int) -> str:
  """`workdir/<dataset>/<method>/fold_<k>` as an absolute path."""
  return os.path.abspath(os.path.join(
      os.path.expanduser(workdir), config.dataset, config.method,
      f'fold_{fold}'))


def fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The architecture-relevant part of `config`, JSON-serialisable."""
  out = {}
  for field in _FINGERPRINT_FIELDS:
    value = config.get(field)
    if isinstance(value, ml_collections.ConfigDict):
      value = value.to_dict()
    out[field] = json.loads(json.dumps(value, default=list, sort_keys=True))
  out['hash'] = hashlib.sha256(
      json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
  return out


def create_manager(directory: str) -> ocp.CheckpointManager:
  """Keeps the latest step and the best step by validation mean F1."""
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=1),
      checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics[BEST_METRIC], reverse=False,
          n=1, keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      best_fn=lambda metrics: metrics[BEST_METRIC], best_mode='max',
      preservation_policy=policy, create=True,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(
      os.path.join(directory, 'checkpoints'), options=options,
      item_names=('state', 'data', 'meta'))


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_state: dict[str, Any] | None, config: ml_collections.ConfigDict,
         metrics: dict[str, float] | None = None) -> None:
  """Saves the host copy of `state` with the data position and fingerprint."""
  manager.save(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_state or {}),
          meta=ocp.args.JsonSave(fingerprint(config))),
      metrics=metrics, force=True)


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            config: ml_collections.ConfigDict,
            step: int | None = None) -> tuple[Any, dict[str, Any], int] | None:
  """(state, data_state, step) of `step` (default latest), None if none.

  Raises ValueError when the checkpoint was trained with a different config.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  meta = manager.restore(
      step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  expected = fingerprint(config)
  if meta.get('hash') != expected['hash']:
    differs = sorted(k for k in expected
                     if k != 'hash' and meta.get(k) != expected[k])
    raise ValueError(
        f'Checkpoint {manager.directory}/{step} was written by a different '
        f'config (fields that differ: {differs}; saved '
        f'{ {k: meta.get(k) for k in differs} }, now '
        f'{ {k: expected[k] for k in differs} }). Use another --workdir or '
        'delete that run directory.')
  restored = manager.restore(
      step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=ocp.args.JsonRestore()))
  return restored['state'], dict(restored['data'] or {}), step
