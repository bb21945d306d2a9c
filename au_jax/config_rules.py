"""The field rules `config_checks.check_config` applies: `RULES`.

Field pattern -> `config_rule_kinds.Rule`; adding a field is one line
here. The rule kinds (`ints`, `reals`, ...) and enumerations are in
config_rule_kinds.py; the walking is config_checks.py.
"""

import pathlib
import re
from typing import Any, Callable

from au_jax import aus as aus_lib
from au_jax import folds as folds_lib
from au_jax.config_rule_kinds import CACHE_MODES
from au_jax.config_rule_kinds import CLASSIFY_FIELDS
from au_jax.config_rule_kinds import DTYPES
from au_jax.config_rule_kinds import INIT_FROM_FIELDS
from au_jax.config_rule_kinds import LOSS_NORMALISATIONS
from au_jax.config_rule_kinds import OPTIMIZERS
from au_jax.config_rule_kinds import PER_MODEL_AXES
from au_jax.config_rule_kinds import Rule
from au_jax.config_rule_kinds import SCHEDULES
from au_jax.config_rule_kinds import SEED_LIMIT
from au_jax.config_rule_kinds import batch_size
from au_jax.config_rule_kinds import boolean
from au_jax.config_rule_kinds import choice
from au_jax.config_rule_kinds import ints
from au_jax.config_rule_kinds import reals
from au_jax.config_rule_kinds import _is_int
from au_jax.config_rule_kinds import _is_real
from au_jax.config_rule_kinds import _is_regex
from au_jax.config_rule_kinds import _module_names
from au_jax.config_rule_kinds import _names_module

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
  if dataset in aus_lib.DATASET_AUS:
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


def _decay_steps_ok(v, c, d):
  if not _is_int(v) or v < 0:
    return False
  return not (c.get('lr_schedule') == 'step' and v == 0)


def _dtype_ok(v, c, d):
  name = getattr(v, '__name__', None) or getattr(v, 'name', None) or v
  return isinstance(name, str) and name in DTYPES


def _median_ok(v, c, d):
  return v is None or v == 'tune' or (_is_int(v) and v >= 1 and v % 2 == 1)


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
    'median_window': Rule(_median_ok, "an odd int >= 1, 'tune' or None", 4),
    'progress_bar': boolean(),
    'svm_on_fc9': boolean(),
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
