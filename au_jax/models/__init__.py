"""au_jax models: one module per paper, each exposing a linen `Model`.

`create(config)` picks the module named by `config.model_name` with importlib
(big_vision style: adding a model touches no registry) and passes
`config.model` as keyword arguments.
"""

import dataclasses
import importlib
import pathlib
from typing import Any

import flax.linen as nn

_MODELS_DIR = pathlib.Path(__file__).parent
# Dataclass fields every linen Module has; not settable from a config.
_MODULE_INTERNAL_FIELDS = ('parent', 'name')


def available_models() -> list[str]:
  """Names of the model files here that define a `Model` class."""
  return sorted(
      path.stem for path in _MODELS_DIR.glob('*.py')
      if not path.stem.startswith('_')
      and 'class Model(' in path.read_text(encoding='utf-8'))


def _as_dict(model_config: Any) -> dict[str, Any]:
  if model_config is None:
    return {}
  if hasattr(model_config, 'to_dict'):  # ml_collections.ConfigDict
    model_config = model_config.to_dict()
  # Lists (e.g. from a JSON/command-line override) become tuples so module
  # fields stay hashable.
  return {key: tuple(value) if isinstance(value, list) else value
          for key, value in dict(model_config).items()}


def create(config: Any, **overrides: Any) -> nn.Module:
  """Builds `au_jax.models.<config.model_name>.Model`.

  Args:
    config: has `model_name` (str), `aus` (list of FACS ids; the model gets
      num_aus=len(config.aus)) and optionally `model` (ConfigDict/dict of
      Model fields).
    **overrides: extra Model fields, e.g. axis_name='batch' under pmap;
      they win over config.model.

  Returns:
    The unbound linen Module.

  Raises:
    ValueError: unknown model_name (lists the available model files).
    TypeError: a key in config.model / overrides that the Model lacks.
  """
  name = config.model_name
  module_name = f'{__name__}.{name}'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as error:
    if error.name != module_name:
      raise  # The model exists but one of its own imports is missing.
    raise ValueError(
        f'Unknown model_name {name!r}: no file au_jax/models/{name}.py. '
        f'Available models: {available_models()}.') from error
  if not hasattr(module, 'Model'):
    raise ValueError(
        f'{module_name} defines no `Model` class; available models: '
        f'{available_models()}.')
  model_cls = module.Model
  kwargs = _as_dict(getattr(config, 'model', None))
  # Output width: one logit per AU, or per class for a `classify` run.
  if config.get('method') == 'classify':
    kwargs['num_aus'] = int(config.num_classes)
  else:
    kwargs['num_aus'] = len(config.aus)
  fields_of = {f.name for f in dataclasses.fields(module.Model)}
  if config.get('dtype') and 'dtype' in fields_of and 'dtype' not in kwargs:
    kwargs['dtype'] = config.dtype  # Mixed precision: compute dtype only.
  kwargs.update(overrides)
  fields = {field.name for field in dataclasses.fields(model_cls)
            if field.name not in _MODULE_INTERNAL_FIELDS}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise TypeError(
        f'config.model_name={name!r}: unknown Model field(s) {unknown}; '
        f'{module_name}.Model accepts {sorted(fields)}.')
  return model_cls(**kwargs)
