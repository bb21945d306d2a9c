"""Settings checked before any work starts (issue 15, item 4).

`check_config(config, device_count)` runs every rule of `RULES` (a table in
config_rules.py: field pattern -> rule) over a config, then over every
stage overlay merged into it, and raises ONE ValueError for the first bad
field, naming the field, its value and the valid range, e.g.

  config.eval_every_steps=0 is invalid: must be an int >= 1.

Why here and not where a field is used: a bad cadence used to divide by zero
after training had started, and `num_train_steps=0` evaluated an untrained
model and reported it. Checking at start-up costs microseconds.

Adding a field is one line in `config_rules.RULES`. Patterns are `fnmatch`
patterns over the dotted path of a field ('model.dropout_rate'; '*' also
crosses dots); the first matching pattern wins, so specific paths go before
general ones.
A field with no rule is allowed (configs differ) and listed by
`unchecked_fields(config)`, so the tests show what is not covered. A rule's
`bad` is a value it must refuse; the tests set it for every field of every
shipped config variant.

The rule kinds (`Rule`, `ints`, `reals`, ...) and enumerations are in
config_rule_kinds.py, the field table in config_rules.py.
"""

import copy
import fnmatch
from typing import Any, Callable, Iterator

import ml_collections

from au_jax.config_rule_kinds import INIT_FROM_FIELDS
from au_jax.config_rule_kinds import Rule
from au_jax.config_rule_kinds import _is_int
from au_jax.config_rules import RULES


# ------------------------------------------------------------------ walking


def rule_for(path: str) -> Rule | None:
  """The first rule whose pattern matches the dotted field `path`."""
  for pattern, rule in RULES.items():
    if fnmatch.fnmatchcase(path, pattern):
      return rule
  return None


def fields(config: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
  """(dotted path, value) of every leaf field; nested ConfigDicts (model,
  init_from) are walked, `stages` is not (overlays are checked merged)."""
  for key, value in config.items():
    path = prefix + key
    if not prefix and key == 'stages':
      continue
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from fields(value, path + '.')
    else:
      yield path, value


def unchecked_fields(config: Any) -> list[str]:
  """Dotted paths of the fields of `config` that no rule covers."""
  return [path for path, _ in fields(config) if rule_for(path) is None]


def _error(path: str, value: Any, valid: str, detail: str | None,
           suffix: str = '') -> ValueError:
  text = f'config.{path}={value!r} is invalid: must be {valid}'
  if detail:
    text += f' ({detail})'
  return ValueError(text + suffix + '.')


def _check_fields(config: Any, device_count: int,
                  name_of: Callable[[str], str] = lambda p: p,
                  suffix: str = '') -> None:
  """Raises for the first bad field, in the order of RULES."""
  by_rule: dict[str, list[tuple[str, Any]]] = {}
  for path, value in fields(config):
    for pattern in RULES:
      if fnmatch.fnmatchcase(path, pattern):
        by_rule.setdefault(pattern, []).append((path, value))
        break
  for pattern, rule in RULES.items():
    for path, value in by_rule.get(pattern, ()):
      detail = None
      try:
        ok = rule.ok(value, config, device_count)
      except (ValueError, TypeError) as error:
        ok, detail = False, str(error).rstrip('.')
      if not ok:
        valid = (rule.valid(config, device_count) if callable(rule.valid)
                 else rule.valid)
        raise _error(name_of(path), value, valid, detail, suffix)


def _overlay_paths(overlay: Any, base: Any, where: str,
                   prefix: str = '') -> list[str]:
  """Dotted paths `overlay` sets; raises for one the base does not have."""
  paths = []
  for key, value in overlay.items():
    if key not in base:
      raise ValueError(
          f'{where} sets {prefix}{key}, which the base config does not have; '
          'a stage may only set existing fields.')
    if not isinstance(value, (ml_collections.ConfigDict, dict)):
      paths.append(prefix + key)
    elif isinstance(base[key], ml_collections.ConfigDict):
      paths += _overlay_paths(value, base[key], where, f'{prefix}{key}.')
    else:  # A whole ConfigDict where the base has None (init_from).
      paths += [f'{prefix}{key}.{path}' for path, _ in fields(value)]
  return paths


def merge_overlay(config: ml_collections.ConfigDict,
                  overlay: Any) -> ml_collections.ConfigDict:
  """A copy of `config` with the (already checked) overlay fields set."""
  config = copy.deepcopy(config)
  with config.unlocked(), config.ignore_type():
    for key, value in overlay.items():
      if (isinstance(config[key], ml_collections.ConfigDict)
          and isinstance(value, (ml_collections.ConfigDict, dict))):
        config[key] = merge_overlay(config[key], value)
      else:
        config[key] = copy.deepcopy(value)
  return config


def check_config(config: ml_collections.ConfigDict,
                 device_count: int = 1) -> None:
  """Raises one ValueError naming the first bad field, its value and range.

  Args:
    config: a run config (configs/*.py); fields it lacks are skipped.
    device_count: devices the global batch is split over.

  Raises:
    ValueError: `config.<field>=<value> is invalid: must be <range>.`; for
      a stage overlay the field is `config.stages.<stage>.<field>`.
  """
  if not _is_int(device_count) or device_count < 1:
    raise ValueError(f'device_count={device_count!r}: must be an int >= 1.')
  _check_fields(config, device_count)
  init_from = config.get('init_from')
  if isinstance(init_from, (ml_collections.ConfigDict, dict)):
    unknown = sorted(set(init_from.keys()) - set(INIT_FROM_FIELDS))
    if unknown:
      raise ValueError(f'config.init_from has unknown field(s) {unknown}; '
                       f'it may set {INIT_FROM_FIELDS}.')
  stages = config.get('stages') or {}
  if not isinstance(stages, (ml_collections.ConfigDict, dict)):
    raise ValueError(f'config.stages={stages!r} is invalid: must be a '
                     'ConfigDict of stage name -> overlay ConfigDict.')
  for stage, overlay in stages.items():
    where = f'config.stages.{stage}'
    if not isinstance(overlay, (ml_collections.ConfigDict, dict)):
      raise ValueError(f'{where}={overlay!r} is invalid: must be a '
                       'ConfigDict of fields the base config has.')
    set_paths = set(_overlay_paths(overlay, config, where))
    merged = merge_overlay(config, overlay)
    _check_fields(
        merged, device_count,
        name_of=lambda p, s=stage, sp=set_paths: (
            f'stages.{s}.{p}' if p in sp else p),
        suffix=f' (with stage {stage!r} applied)')
