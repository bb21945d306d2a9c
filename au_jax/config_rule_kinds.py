"""The kinds of config rule: `Rule`, the enumerations fields take, value
predicates and rule makers (`ints`, `reals`, `choice`, ...). The field table
built from them is config_rules.RULES; config_checks applies it.

Enumerations (optimizers, schedules) are repeated here rather than imported
from optim.py so the config checks stay import-light (no jax).
"""

import math
import numbers
import pathlib
import re
from typing import Any, Callable, NamedTuple


_PACKAGE = pathlib.Path(__file__).parent

OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'step', 'linear')
# 'none' (per-example sums) is a losses option for evaluation, not training.
LOSS_NORMALISATIONS = ('batch', 'known')
DTYPES = ('float32', 'bfloat16', 'float16')
CACHE_MODES = ('device', 'host')
PER_MODEL_AXES = ('view', 'au')
CLASSIFY_FIELDS = ('identity', 'emotion', 'view')
INIT_FROM_FIELDS = ('method', 'dataset', 'dataset_config', 'fold', 'view',
                    'au', 'stage', 'params', 'config', 'classify_field',
                    'workdir')
# grain wants a 32-bit non-negative seed and train.py adds the fold to it.
SEED_LIMIT = 2**31


class Rule(NamedTuple):
  """ok(value, config, device_count) -> bool (or raises ValueError with a
  detail); valid: the valid range in words (or a function of config and
  device_count giving it); bad: a value the rule refuses (for the tests)."""
  ok: Callable[[Any, Any, int], bool]
  valid: str | Callable[[Any, int], str]
  bad: Any


# ---------------------------------------------------------------- predicates


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


def _is_regex(value: Any) -> bool:
  if not isinstance(value, str):
    return False
  try:
    re.compile(value)
  except re.error as error:
    raise ValueError(f'not a regular expression ({error})') from None
  return True


def _module_names(package: str) -> list[str]:
  return sorted(p.stem for p in (_PACKAGE / package).glob('*.py')
                if not p.stem.startswith('_'))


def _names_module(package: str) -> Callable[[Any, Any, int], bool]:
  return lambda v, c, d: (isinstance(v, str) and v.isidentifier()
                          and (_PACKAGE / package / f'{v}.py').is_file())


# ------------------------------------------------------------- rule makers


def ints(low: int, high: int | None = None, bad: Any = None,
         none_ok: bool = False) -> Rule:
  """An int in [low, high] (high None: no upper bound)."""
  valid = f'an int >= {low}' if high is None else f'an int in [{low}, {high}]'
  return Rule(
      lambda v, c, d: (none_ok and v is None) or (
          _is_int(v) and v >= low and (high is None or v <= high)),
      valid + (' or None' if none_ok else ''),
      low - 1 if bad is None else bad)


def reals(low: float, high: float | None = None, low_open: bool = False,
          high_open: bool = False, bad: Any = None) -> Rule:
  """A finite number in the interval; e.g. (0, 1) or [0, 1)."""
  def ok(v, c, d):
    return (_is_real(v) and (v > low if low_open else v >= low)
            and (high is None or (v < high if high_open else v <= high)))
  if high is None:
    valid = f'a number {">" if low_open else ">="} {low}'
  else:
    valid = (f'a number in {"(" if low_open else "["}{low}, {high}'
             f'{")" if high_open else "]"}')
  return Rule(ok, valid, low - 1.0 if bad is None else bad)


def choice(*options: Any, bad: Any = 'no_such_option') -> Rule:
  return Rule(lambda v, c, d: v in options,
              f'one of {options}', bad)


def boolean() -> Rule:
  return Rule(lambda v, c, d: isinstance(v, bool), 'True or False', 'yes')


def batch_size() -> Rule:
  return Rule(
      lambda v, c, d: _is_int(v) and v > 0 and v % d == 0,
      lambda c, d: (f'a positive multiple of the device count ({d}), so '
                    'every device gets the same batch'),
      0)
