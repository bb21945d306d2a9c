"""Settings checked before any work starts: one walker, one rule table.

`check_config(config, device_count)` runs every rule of `RULES` (a table
below: field pattern -> rule) over a config, then over every
stage overlay merged into it, and raises ONE ValueError for the first bad
field, naming the field, its value and the valid range, e.g.

  config.eval_every_steps=0 is invalid: must be an int >= 1.

Why here and not where a field is used: a bad cadence used to divide by zero
after training had started, and `num_train_steps=0` evaluated an untrained
model and reported it. Checking at start-up costs microseconds.

Adding a field is one line in `RULES`. Patterns are `fnmatch`
patterns over the dotted path of a field ('model.dropout_rate'; '*' also
crosses dots); the first matching pattern wins, so specific paths go before
general ones.
A field with no rule is allowed (configs differ) and listed by
`unchecked_fields(config)`, so the tests show what is not covered. A rule's
`bad` is a value it must refuse; the tests set it for every field of every
shipped config variant.

The module reads top down: the enumerations fields take (the optimiser
and schedule names are `optim`'s own), the rule kinds
(`Rule`, `ints`, `reals`, ...), the walker (`check_config`), then `RULES`.
"""


import copy
import fnmatch
import math
import ml_collections
import numbers
import pathlib
import re
from typing import Any, Callable, Iterator, NamedTuple

from au_jax import aus as aus_lib
from au_jax import optim
from au_jax.data import folds as folds_lib
from au_jax.preprocess import landmarks as landmarks_lib


_PACKAGE = pathlib.Path(__file__).parent

OPTIMIZERS = optim.OPTIMIZERS
SCHEDULES = optim.SCHEDULES
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


_REPO = pathlib.Path(__file__).parent.parent


def _crop_ok(v, c, d):
  resize = c.get('resize_size')
  return _is_int(v) and v >= 1 and (not _is_int(resize) or v <= resize)


def _folds_ok(v, c, d):
  dataset = c.get('dataset')
  if (dataset is not None and dataset not in folds_lib.PARTS_OF
      and dataset not in folds_lib.ROUND_ROBIN):
    raise ValueError(f'au_jax has no fold protocol for dataset {dataset!r}')
  if isinstance(v, str) and v.strip() == 'all':
    return True
  folds_lib.parse_folds(v, _num_folds(c))  # Raises naming the bad fold.
  return True


def _num_folds(c) -> int:
  """k of the config's fold protocol (3 when the protocol fields are bad:
  their own rules report them)."""
  k = c.get('num_folds')
  if c.get('fold_protocol') == folds_lib.KFOLD and _is_int(k) and k >= 2:
    return int(k)
  return folds_lib.NUM_FOLDS


def _num_folds_ok(v, c, d):
  if v is None:
    return True
  folds_lib.Protocol(c.get('fold_protocol') or folds_lib.STANDARD, v)
  return True


def _aus_ok(v, c, d):
  if isinstance(v, (str, bytes)) or not hasattr(v, '__iter__'):
    return False
  if any(not _is_int(a) for a in v):
    return False
  dataset = c.get('dataset')
  # A dataset that labels no AU (face identities) trains on another field;
  # its runs keep the AU list of the runs they start.
  if aus_lib.DATASET_AUS.get(dataset):
    aus_lib.label_indices(dataset, v)  # Raises naming the bad AU.
  else:
    aus_lib.check_aus(v)
  return True


def _channels_ok(positive: bool) -> Callable[[Any, Any, int], bool]:
  def ok(v, c, d):
    return (isinstance(v, (tuple, list)) and len(v) in (1, 3)
            and all(_is_real(x) and (x > 0 or not positive) for x in v))
  return ok


def _pairs_ok(v, c, d):
  """lr_mults: ((regex, multiplier >= 0), ...)."""
  if not isinstance(v, (tuple, list)):
    return False
  for pair in v:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
      return False
    pattern, multiplier = pair
    if not _is_regex(pattern) or not (_is_real(multiplier)
                                      and multiplier >= 0):
      return False
  return True


def _axes_ok(v, c, d):
  return (isinstance(v, (tuple, list)) and len(set(v)) == len(v)
          and set(v) <= set(PER_MODEL_AXES))


def _views_ok(v, c, d):
  if not isinstance(v, (tuple, list)):
    return False
  if 'view' in tuple(c.get('one_model_per') or ()) and not v:
    return False
  return all(_is_int(x) and x >= 0 for x in v) and len(set(v)) == len(v)


def _stage_order_ok(v, c, d):
  stages = c.get('stages') or {}
  return (isinstance(v, (tuple, list)) and len(set(v)) == len(v)
          and all(isinstance(n, str) and n in stages for n in v))


def _pnet_ok(v, c, d):
  """LP-Net's P-Net reads the records' landmarks: refuse it on a dataset
  whose builder stores none (preprocess/landmarks.DATASET_LANDMARKS)."""
  if not isinstance(v, bool):
    return False
  dataset = c.get('dataset')
  if v and dataset is not None and not landmarks_lib.has_landmarks(dataset):
    raise ValueError(f'dataset {dataset!r} records have no landmarks for '
                     'the P-Net')
  return True


def _decay_steps_ok(v, c, d):
  if not _is_int(v) or v < 0:
    return False
  return not (c.get('lr_schedule') == 'step' and v == 0)


def _dtype_ok(v, c, d):
  name = getattr(v, '__name__', None) or getattr(v, 'name', None) or v
  return isinstance(name, str) and name in DTYPES


def _median_ok(v, c, d):
  # Even windows too: AUNets tunes over {3, 5, 7, 9, 10, 11} (how an even
  # window centres: postprocess.median_smooth).
  return v is None or v == 'tune' or (_is_int(v) and v >= 1)


def _num_classes_ok(v, c, d):
  if c.get('method') == 'classify':
    return _is_int(v) and v >= 2
  return v is None or (_is_int(v) and v >= 0)  # Unused: 0/None placeholder.


def _classify_field_ok(v, c, d):
  if c.get('method') == 'classify':
    return v in CLASSIFY_FIELDS
  return v in (None, '', *CLASSIFY_FIELDS)


def _config_path_ok(v, c, d):
  if v is None:
    return True
  if not isinstance(v, str):
    return False
  path = v.split(':', 1)[0]
  return path.endswith('.py') and (pathlib.Path(path).is_file()
                                   or (_REPO / path).is_file())


def _or_none(rule: Rule) -> Rule:
  if callable(rule.valid):  # A range that depends on the config.
    valid = lambda c, d: f'{rule.valid(c, d)} or None'
  else:
    valid = f'{rule.valid} or None'
  return Rule(lambda v, c, d: v is None or rule.ok(v, c, d), valid, rule.bad)


_REGEX = Rule(lambda v, c, d: _is_regex(v),
              "a valid regular expression ('' matches nothing here)", '(')
_PATH = Rule(lambda v, c, d: isinstance(v, str) and v.strip() != '',
             'a non-empty path', '')
# A name that becomes part of a directory name (runs.dataset_dir_name).
_NAME = Rule(lambda v, c, d: v is None or (
    isinstance(v, str) and re.fullmatch(r'[\w.-]+', v) is not None),
             'None or a name of letters, digits, _ . -', 'a/b')
_KNOWN_DATASET = Rule(lambda v, c, d: v in aus_lib.DATASET_AUS,
                      f'one of {tuple(sorted(aus_lib.DATASET_AUS))}',
                      'no_such_dataset')
_METHOD = Rule(_names_module('methods'),
               lambda c, d: ('the name of a file au_jax/methods/<name>.py '
                             f'(have {_module_names("methods")})'),
               'no_such_method')

# Field pattern -> rule; first match wins. Order matters only where a rule
# reads another field: resize_size is checked before crop_size, dataset
# before folds and aus, one_model_per before views.
RULES: dict[str, Rule] = {
    # What is trained, on what.
    'method': _METHOD,
    'model_name': Rule(_names_module('models'),
                       lambda c, d: ('the name of a file au_jax/models/'
                                     f'<name>.py (have '
                                     f'{_module_names("models")})'),
                       'no_such_model'),
    'dataset': _KNOWN_DATASET,
    # Part of the run directory's name (runs.dataset_dir_name).
    'dataset_config': _NAME,
    # A second dataset mixed in or tested on (IdenNet's identities).
    '*_dataset': _or_none(_KNOWN_DATASET),
    '*_dataset_config': _NAME,
    'identity_share': reals(0, 1, high_open=True, bad=1.0),
    'data_dir': _or_none(_PATH),
    'manual_dir': _or_none(_PATH),
    # Fold protocol (folds.Protocol): the standard 3 parts or seeded k-fold
    # (before 'folds', whose range they set).
    'fold_protocol': choice(*folds_lib.PROTOCOLS),
    'num_folds': Rule(_num_folds_ok, f"None or {folds_lib.NUM_FOLDS} "
                      "(standard), an int >= 2 with fold_protocol='kfold'",
                      1),
    'fold_seed': ints(0, SEED_LIMIT - 1),
    'folds': Rule(_folds_ok, f"fold numbers in 1..{folds_lib.NUM_FOLDS} "
                  "(1..num_folds with fold_protocol='kfold') such as "
                  "'1,2,3', or 'all'", '0'),
    'aus': Rule(_aus_ok, "distinct FACS AU ids labelled in config.dataset",
                (99,)),
    'num_validation_subjects': ints(0),
    'max_validation_frames': ints(1, none_ok=True),
    'strict_folds': boolean(),
    'one_model_per': Rule(_axes_ok, f'a subset of {PER_MODEL_AXES}',
                          ('subject',)),
    'views': Rule(_views_ok, "distinct view ids >= 0 (at least one when "
                  "one_model_per has 'view')", (-1,)),
    'adapt_views_from': Rule(
        lambda v, c, d: v is None or v == -1 or (_is_int(v) and v in tuple(
            c.get('views') or ())),
        'one of config.views (the view the others start from), or -1 '
        '(none)', -2),
    'classify_field': Rule(
        _classify_field_ok, f"one of {CLASSIFY_FIELDS} (also None or '' "
        "when method is not 'classify')", 'no_such_field'),
    'num_classes': Rule(_num_classes_ok, "an int >= 2 when method is "
                        "'classify' (else unused: None or an int >= 0)", -1),
    # Input.
    'resize_size': ints(1),
    'crop_size': Rule(_crop_ok, lambda c, d: (
        f'an int in [1, resize_size={c.get("resize_size")}]'), 10**6),
    'flip': boolean(),
    'pixel_mean': Rule(_channels_ok(False), '1 or 3 finite numbers',
                       (0.5, 0.5)),
    'pixel_std': Rule(_channels_ok(True), '1 or 3 numbers > 0',
                      (1.0, 0.0, 1.0)),
    'cache': choice(None, *CACHE_MODES, bad='disk'),
    'num_workers': ints(0),
    'worker_buffer_size': ints(1),
    'eval_read_threads': ints(1),
    # Model.
    'model.region_grid': Rule(
        lambda v, c, d: (isinstance(v, (tuple, list)) and len(v) == 2
                         and all(_is_int(x) and x >= 1 for x in v)),
        'two ints >= 1 (rows, columns)', (0, 8)),
    'model.affine_patch_norm': boolean(),
    '*dropout_rate': reals(0, 1, high_open=True, bad=1.0),
    'model.dropout': reals(0, 1, high_open=True, bad=1.0),
    'model.depth': ints(1),  # The trunk names the depths it builds.
    'model.width': ints(1),
    'model.*_features': ints(1),
    'model.*_hidden': ints(1),
    'model.*_size': ints(1),
    'model.ceil_pool': boolean(),
    'model.grayscale': boolean(),
    'model.identity_branch': boolean(),
    'model.subtract_identity': boolean(),
    'model.use_pnet': Rule(_pnet_ok, 'True or False (False when '
                           'config.dataset has no landmarks)', 'yes'),
    'use_*': boolean(),
    '*.use_*': boolean(),
    '*dtype': Rule(_dtype_ok, f'one of {DTYPES}', 'float8'),
    # Optimisation.
    'optimizer': choice(*OPTIMIZERS),
    'learning_rate': reals(0, low_open=True, bad=0.0),
    'momentum': reals(0, 1, high_open=True, bad=1.0),
    'weight_decay': reals(0, bad=-1e-4),
    'adam_b1': reals(0, 1, high_open=True, bad=1.0),
    'adam_b2': reals(0, 1, high_open=True, bad=1.0),
    'lr_schedule': choice(None, '', *SCHEDULES),
    'lr_decay_steps': Rule(_decay_steps_ok, "an int >= 0 (> 0 when "
                           "lr_schedule is 'step')", -1),
    'lr_decay_factor': reals(0, 1, low_open=True, bad=0.0),
    'loss_normalise': choice(*LOSS_NORMALISATIONS, bad='none'),
    '*_weight': reals(0, bad=-1.0),  # Loss weights (LP-Net's lambda).
    '*_margin': reals(0, bad=-1.0),  # Triplet margins.
    'num_negatives': ints(1),
    'selective_learning': boolean(),
    # Positive fraction selective learning balances towards (LP-Net 3.3).
    'selective_learning_target': reals(0, 1, low_open=True, high_open=True,
                                       bad=1.0),
    'frozen': _or_none(_REGEX),
    'lr_mults': Rule(_pairs_ok, '(regex, multiplier >= 0) pairs',
                     (('(', 1.0),)),
    'stage_order': Rule(_stage_order_ok, lambda c, d: (
        'distinct names of config.stages '
        f'{tuple(sorted((c.get("stages") or {}).keys()))}'),
                        ('no_such_stage',)),
    # Schedule of the run.
    'batch_size': batch_size(),
    'eval_batch_size': batch_size(),
    'num_train_steps': ints(1),
    'log_every_steps': ints(1),
    'eval_every_steps': ints(1),
    'checkpoint_every_steps': ints(1),
    'seed': ints(0, SEED_LIMIT - 1),
    # Evaluation.
    'threshold': reals(0, 1, low_open=True, high_open=True, bad=1.0),
    'tune_thresholds': boolean(),
    'median_window': Rule(_median_ok, "an int >= 1, 'tune' or None", 0),
    'progress_bar': boolean(),
    'svm_on_fc9': boolean(),
    'oversample_positives': boolean(),
    'au_subject_pairs': boolean(),
    'svm_max_train_frames': ints(1),
    'host_augmentation': boolean(),
    'flow': boolean(),
    'imagenet_weights': Rule(
        lambda v, c, d: v is None or (
            isinstance(v, str) and v.strip() != ''
            and c.get('init_from') is None),
        'None or a .npz/.safetensors path, and not with init_from (a run '
        'starts from one source)', 3),
    'model.width_multiplier': Rule(
        lambda v, c, d: isinstance(v, (int, float)) and not isinstance(
            v, bool) and v > 0, 'a number > 0', 0.0),
    'model.fc_width': ints(1),
    'model.two_way_output': boolean(),
    'model.fusion': Rule(
        lambda v, c, d: v in ('rgb', 'flow', 'channels', 'horizontal',
                              'pi_conv', 'pi_fc6', 'pi_fc7'),
        'one of au_jax.models.aunets.FUSIONS', 'sideways'),
    'prefetch_batches': ints(1),
    'min_positives_for_threshold': ints(0),
    'best_metric': Rule(lambda v, *_: v in ('f1', 'auc'), "'f1' or 'auc'",
                        'map'),
    # Starting weights (None fields mean: the same as this run).
    'init_from': Rule(lambda v, c, d: v is None,
                      f'None or a ConfigDict with fields {INIT_FROM_FIELDS}',
                      'yes'),
    'init_from.method': _or_none(_METHOD),
    'init_from.dataset': _or_none(_KNOWN_DATASET),
    'init_from.dataset_config': _NAME,
    'init_from.stage': _NAME,
    'init_from.fold': Rule(
        lambda v, c, d: v in (None, 'all') or (
            _is_int(v) and 1 <= v <= _num_folds(c)),
        lambda c, d: f"None, 'all' or an int in [1, {_num_folds(c)}]", 99),
    # 'none' clears that level of the source run's directory (runs.py).
    'init_from.view': Rule(
        lambda v, c, d: v in (None, 'none') or (_is_int(v) and v >= 0),
        "None, 'none' or an int >= 0", -1),
    'init_from.au': Rule(
        lambda v, c, d: v in (None, 'none') or v in aus_lib.CATALOGUE,
        "None, 'none' or a FACS AU id au_jax knows", 99),
    'init_from.classify_field': Rule(
        lambda v, c, d: v in (None, 'identity', 'emotion', 'view'),
        "None, 'identity', 'emotion' or 'view'", 'age'),
    'init_from.params': _or_none(_REGEX),
    # Where the source run lives (relative: to this run's workdir).
    'init_from.workdir': _or_none(_PATH),
    'init_from.config': Rule(_config_path_ok,
                             "None or 'configs/<file>.py[:variant]' naming "
                             'an existing file', 'configs/no_such.py'),
}
