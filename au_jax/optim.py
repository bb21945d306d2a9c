"""Optimisers, learning-rate schedules, frozen parameters and per-module rates.

Every method trains with `create_optimizer(config)`:
  * `config.optimizer`: 'sgd' (momentum), 'adam' or 'adamw'; Caffe-style L2
    weight decay (`weight_decay * w` added to the gradient before the
    update, as DRML's and IdenNet's solvers do) for 'sgd'/'adam', decoupled
    decay for 'adamw';
  * `config.lr_schedule`: 'constant', 'step' (x `lr_decay_factor` every
    `lr_decay_steps`, Caffe's "step" policy) or 'linear' (to 0 at
    `num_train_steps`, AUNets);
  * `config.frozen`: a regex over '/'-joined parameter paths
    (e.g. 'encoder/.*'); matching parameters get no gradient (the trainer
    stops it, see `trainable_mask`) and no optimiser state (`optax.
    multi_transform` gives them `set_to_zero`, which keeps none);
  * `config.lr_mults`: ((regex, multiplier), ...); the first matching regex
    scales that parameter's learning rate (LP-Net: stem 0.5x while L-Net
    trains at the base rate). A multiplier of 0 is the same as frozen.

Regexes are matched with `re.fullmatch` against paths such as
'stem/layer1_0/conv1/kernel', so 'stem/.*' means "everything under stem".
"""

import re
from typing import Any, Sequence

import flax
import jax
import ml_collections
import optax

PyTree = Any

SCHEDULES = ('constant', 'step', 'linear')
OPTIMIZERS = ('sgd', 'adam', 'adamw')
_FROZEN = 'frozen'


def path_name(path: Sequence[Any]) -> str:
  """('stem', 'conv1', 'kernel') or jax key-paths -> 'stem/conv1/kernel'."""
  parts = []
  for key in path:
    key = getattr(key, 'key', getattr(key, 'name', key))
    parts.append(str(key))
  return '/'.join(parts)


def parameter_names(params: PyTree) -> list[str]:
  """'/'-joined paths of every leaf of `params`, in tree order."""
  return [path_name(path) for path, _ in
          jax.tree_util.tree_flatten_with_path(params)[0]]


def _compile(pattern: str, field: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as error:
    raise ValueError(f'config.{field}={pattern!r} is not a valid regular '
                     f'expression: {error}.') from error


def learning_rate_multipliers(config: ml_collections.ConfigDict,
                              params: PyTree) -> PyTree:
  """A tree like `params` of floats: 0 for frozen parameters, else the
  multiplier of the first `lr_mults` regex that matches (1 if none)."""
  frozen = config.get('frozen') or ''
  frozen_re = _compile(frozen, 'frozen') if frozen else None
  mults = [(_compile(pattern, 'lr_mults'), float(mult))
           for pattern, mult in (config.get('lr_mults') or ())]

  def multiplier(path, _):
    name = path_name(path)
    if frozen_re is not None and frozen_re.fullmatch(name):
      return 0.0
    for pattern, mult in mults:
      if pattern.fullmatch(name):
        return mult
    return 1.0
  return jax.tree_util.tree_map_with_path(multiplier, params)


def trainable_mask(config: ml_collections.ConfigDict,
                   params: PyTree) -> PyTree:
  """A tree like `params` of bools: False where the learning rate is 0."""
  return jax.tree_util.tree_map(
      lambda mult: mult > 0, learning_rate_multipliers(config, params))


def create_learning_rate(config: ml_collections.ConfigDict,
                         scale: float = 1.0) -> optax.Schedule:
  """The base schedule of `config.lr_schedule`, times `scale`."""
  base = config.learning_rate * scale
  schedule = config.get('lr_schedule') or (
      'step' if config.get('lr_decay_steps') else 'constant')
  if schedule == 'constant':
    return optax.constant_schedule(base)
  if schedule == 'step':
    if not config.get('lr_decay_steps'):
      raise ValueError("config.lr_schedule='step' needs config.lr_decay_steps "
                       '> 0.')
    return optax.exponential_decay(
        base, transition_steps=config.lr_decay_steps,
        decay_rate=config.lr_decay_factor, staircase=True)
  if schedule == 'linear':
    return optax.linear_schedule(base, 0.0, max(1, config.num_train_steps))
  raise ValueError(f'config.lr_schedule={schedule!r}; expected one of '
                   f'{SCHEDULES}.')


def _base_optimizer(config: ml_collections.ConfigDict,
                    learning_rate: optax.Schedule
                    ) -> optax.GradientTransformation:
  name = config.optimizer
  weight_decay = config.get('weight_decay', 0.0) or 0.0
  betas = dict(b1=config.get('adam_b1', 0.9), b2=config.get('adam_b2', 0.999))
  if name == 'sgd':
    update = optax.sgd(learning_rate, momentum=config.get('momentum', 0.0))
  elif name == 'adam':
    update = optax.adam(learning_rate, **betas)
  elif name == 'adamw':
    return optax.adamw(learning_rate, weight_decay=weight_decay, **betas)
  else:
    raise ValueError(f'config.optimizer={name!r}; expected one of '
                     f'{OPTIMIZERS}.')
  # Caffe adds weight_decay * w to the gradient before the solver update.
  return optax.chain(optax.add_decayed_weights(weight_decay), update)


def create_optimizer(config: ml_collections.ConfigDict,
                     params: PyTree) -> optax.GradientTransformation:
  """The optimiser for `params`, with frozen groups and rate multipliers.

  Without `frozen`/`lr_mults` this is exactly the plain optimiser (same
  state tree as before the contract), so earlier runs' numbers are kept.
  """
  mults = learning_rate_multipliers(config, params)
  distinct = sorted(set(jax.tree_util.tree_leaves(mults)))
  if distinct == [1.0]:
    return _base_optimizer(config, create_learning_rate(config))
  labels = jax.tree_util.tree_map(
      lambda mult: _FROZEN if mult == 0 else f'x{mult!r}', mults)
  transforms = {}
  for mult in distinct:
    if mult == 0:
      transforms[_FROZEN] = optax.set_to_zero()
    else:
      transforms[f'x{mult!r}'] = _base_optimizer(
          config, create_learning_rate(config, mult))
  return optax.multi_transform(transforms, labels)


def stop_frozen_gradients(params: PyTree, mask: PyTree) -> PyTree:
  """`params` with `lax.stop_gradient` on leaves whose mask is False, so
  backpropagation computes no weight gradient for them at all."""
  return jax.tree_util.tree_map(
      lambda p, keep: p if keep else jax.lax.stop_gradient(p), params, mask)


def count_parameters(params: PyTree, mask: PyTree | None = None) -> int:
  """Number of scalars in `params` (only where `mask` is True, if given)."""
  leaves = jax.tree_util.tree_leaves(params)
  if mask is None:
    return int(sum(x.size for x in leaves))
  return int(sum(x.size for x, keep in
                 zip(leaves, jax.tree_util.tree_leaves(mask)) if keep))


def state_parameter_count(opt_state: PyTree) -> int:
  """Scalars held by an optimiser state (tests: frozen parameters add 0)."""
  return int(sum(getattr(x, 'size', 0) for x in
                 jax.tree_util.tree_leaves(opt_state)
                 if getattr(x, 'ndim', 0) > 0))


def flat_params(params: PyTree) -> dict[str, Any]:
  """{'a/b/kernel': array} of a parameter tree."""
  return {'/'.join(k): v for k, v in
          flax.traverse_util.flatten_dict(
              flax.core.unfreeze(params)).items()}


