"""config_checks: every shipped config passes; every bad value is named."""

import copy
import importlib
import numbers
import pathlib

import jax.numpy as jnp
import ml_collections
import pytest

from au_jax import config_checks
from au_jax import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Globbed at collection time so configs that land later are walked too.
# Shared helpers (configs/common.py) define no get_config and are skipped.
CONFIG_FILES = sorted(p for p in (ROOT / 'configs').glob('*.py')
                      if not p.stem.startswith('_')
                      and 'def get_config' in p.read_text())


def _variants(path: pathlib.Path) -> list[str]:
  """The variants `python -m au_jax.main --help` lists for the config
  (`main.config_variants`), with the default '' first."""
  return sorted(set(main.config_variants(path)) | {''})


def _get(name: str, variant: str) -> ml_collections.ConfigDict:
  return importlib.import_module(f'configs.{name}').get_config(variant)


def _distinct_variants() -> list[tuple[str, str]]:
  """(file stem, variant) pairs; an alias ('cpu' = '') is walked once."""
  found, seen = [], set()
  for path in CONFIG_FILES:
    for variant in _variants(path):
      text = str(_get(path.stem, variant))
      if (path.stem, text) not in seen:
        seen.add((path.stem, text))
        found.append((path.stem, variant))
  return found


VARIANTS = _distinct_variants()
CHECKED_VARIANTS = VARIANTS


def _set(config: ml_collections.ConfigDict, path: str, value) -> None:
  *parents, leaf = path.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  with config.unlocked(), config.ignore_type():
    node[leaf] = value


def _error(config, device_count: int = 1) -> str:
  with pytest.raises(ValueError) as info:
    config_checks.check_config(config, device_count)
  message = str(info.value)
  assert '\n' not in message, message  # One line.
  return message


def test_variants_found():
  assert ('drml', '') in VARIANTS
  assert ('drml', 'paper') in VARIANTS
  assert ('drml', 'test') in VARIANTS
  assert ('drml', 'cpu') not in VARIANTS  # The same config as ''.
  assert _variants(ROOT / 'configs' / 'drml.py') == ['', 'cpu', 'gpu',
                                                     'paper', 'test']


@pytest.mark.parametrize('name,variant', CHECKED_VARIANTS)
def test_shipped_variant_passes(name, variant):
  config = _get(name, variant)
  config_checks.check_config(config, 1)
  # Printed (pytest -s) so the walk shows what it does not cover.
  print(f'configs/{name}.py:{variant} unchecked:',
        config_checks.unchecked_fields(config))


@pytest.mark.parametrize('name,variant', CHECKED_VARIANTS)
def test_every_field_with_a_rule_refuses_its_bad_value(name, variant):
  config = _get(name, variant)
  walked = 0
  for path, _ in config_checks.fields(config):
    rule = config_checks.rule_for(path)
    if rule is None:
      continue
    bad = copy.deepcopy(config)
    _set(bad, path, rule.bad)
    message = _error(bad)
    assert message.startswith(f'config.{path}={rule.bad!r} is invalid'), (
        path, message)
    walked += 1
  assert walked >= 30  # drml has ~40 ruled fields; catches a broken walk.
  stages = config.get('stages') or {}
  for stage, overlay in stages.items():
    for path, _ in config_checks.fields(overlay):
      rule = config_checks.rule_for(path)
      if rule is None:
        continue
      bad = copy.deepcopy(config)
      with bad.stages.unlocked():  # Stages may share sub-dicts; detach.
        bad.stages[stage] = copy.deepcopy(bad.stages[stage])
      _set(bad.stages[stage], path, rule.bad)
      assert _error(bad).startswith(f'config.stages.{stage}.{path}='), path
    bad = copy.deepcopy(config)
    _set(bad.stages[stage], 'no_such_field', 1)
    message = _error(bad)
    assert f'config.stages.{stage}' in message and 'no_such_field' in message


def _is_numeric(value) -> bool:
  if isinstance(value, (tuple, list)):
    return bool(value) and all(_is_numeric(v) for v in value)
  return isinstance(value, numbers.Number) and not isinstance(value, bool)


@pytest.mark.parametrize('variant', [v for n, v in VARIANTS if n == 'drml'])
def test_every_numeric_drml_field_has_a_rule(variant):
  config = _get('drml', variant)
  numeric = [path for path, value in config_checks.fields(config)
             if _is_numeric(value)]
  assert 'num_train_steps' in numeric and 'model.dropout_rate' in numeric
  missing = [p for p in numeric if config_checks.rule_for(p) is None]
  assert not missing, f'numeric fields without a rule: {missing}'
  # DRML today: only path-like strings and the builder config lack rules
  # beyond the generic ones; a field added without a rule shows up here.
  print(variant, config_checks.unchecked_fields(config))


@pytest.fixture
def config():
  return _get('drml', 'test')


@pytest.mark.parametrize('field,value,range_text', [
    ('num_train_steps', 0, 'an int >= 1'),
    ('eval_every_steps', 0, 'an int >= 1'),
    ('threshold', 0.0, 'a number in (0, 1)'),
    ('threshold', 1.0, 'a number in (0, 1)'),
    ('momentum', 1.0, 'a number in [0, 1)'),
    ('learning_rate', -1e-3, 'a number > 0'),
    ('weight_decay', -1.0, 'a number >= 0'),
    ('seed', 2**31, 'an int in [0, 2147483647]'),
    ('seed', 1.5, 'an int in [0, 2147483647]'),
    ('num_train_steps', True, 'an int >= 1'),  # A bool is not a count.
    ('max_validation_frames', 0, 'an int >= 1 or None'),
    ('optimizer', 'rmsprop', "one of ('sgd', 'adam', 'adamw')"),
    ('loss_normalise', 'none', "one of ('batch', 'known')"),
])
def test_message_names_field_value_and_range(config, field, value,
                                             range_text):
  _set(config, field, value)
  assert _error(config) == (f'config.{field}={value!r} is invalid: must be '
                            f'{range_text}.')


@pytest.mark.parametrize('field,value', [
    ('threshold', 1e-6), ('threshold', 0.999), ('momentum', 0.0),
    ('weight_decay', 0.0), ('seed', 0), ('seed', 2**31 - 1),
    ('max_validation_frames', None), ('num_validation_subjects', 0),
    ('folds', 'all'), ('folds', '(1, 3)'), ('folds', 2),
    ('lr_decay_steps', 0), ('num_workers', 0),
])
def test_edge_values_pass(config, field, value):
  _set(config, field, value)
  config_checks.check_config(config, 1)


def test_batch_sizes_divide_over_devices(config):
  config.batch_size = 16
  config.eval_batch_size = 24
  config_checks.check_config(config, 8)
  assert _error(config, 32) == (
      'config.batch_size=16 is invalid: must be a positive multiple of the '
      'device count (32), so every device gets the same batch.')
  assert _error(config, 16).startswith('config.eval_batch_size=24 ')
  with pytest.raises(ValueError, match='device_count=0'):
    config_checks.check_config(config, 0)


def test_crop_at_most_resize(config):
  config.crop_size = config.resize_size
  config_checks.check_config(config)
  config.crop_size = config.resize_size + 1
  assert _error(config) == (
      'config.crop_size=73 is invalid: must be an int in [1, '
      'resize_size=72].')


def test_folds_and_aus_known_for_the_dataset(config):
  config.folds = '1,4'
  assert 'fold 4' in _error(config)
  config.folds = '1'
  config.aus = (1, 43)  # 43 exists in FACS but synthetic_au lacks it.
  assert 'AU 43 is not labelled' in _error(config)
  config.dataset = 'bp4d'
  config.aus = (1, 2, 26)  # BP4D's 12 AUs lack 26.
  assert _error(config).startswith('config.aus=(1, 2, 26) is invalid')


def test_model_and_method_files_must_exist(config):
  config.model_name = 'drml2'
  message = _error(config)
  assert message.startswith("config.model_name='drml2' is invalid")
  assert "'drml'" in message  # Lists the models there are.


def test_regex_fields(config):
  with config.unlocked():
    config.frozen = 'conv[1-3]/'
    config.lr_mults = (('output', 10.0), ('conv1', 0.0))
  config_checks.check_config(config)
  config.lr_mults = (('output', -1.0),)
  assert _error(config).startswith('config.lr_mults=')
  config.lr_mults = ()
  config.frozen = 'conv[1'
  message = _error(config)
  assert message.startswith("config.frozen='conv[1' is invalid")
  assert 'not a regular expression' in message


@pytest.mark.parametrize('value,ok', [
    (1, True), (3, True), ('tune', True), (None, True), (2, True), (10, True),
    (0, False), (-1, False), ('median', False)])
def test_median_window(config, value, ok):
  with config.unlocked():
    config.median_window = 5
  _set(config, 'median_window', value)
  if ok:
    config_checks.check_config(config)
  else:
    assert _error(config).startswith(f'config.median_window={value!r} ')


@pytest.mark.parametrize('value,ok', [
    ('bfloat16', True), (jnp.bfloat16, True), (jnp.float32, True),
    ('int8', False), (jnp.int32, False)])
def test_dtype(config, value, ok):
  _set(config, 'model.dropout_rate', 0.0)
  with config.unlocked():
    config.dtype = 'float32'
  _set(config, 'dtype', value)
  if ok:
    config_checks.check_config(config)
  else:
    assert _error(config).startswith('config.dtype=')


def test_cache_and_one_model_per(config):
  with config.unlocked():
    config.cache = ml_collections.FieldReference(None, field_type=str)
    config.one_model_per = ('view', 'au')
    config.views = (1, 2)
  config_checks.check_config(config)
  config.cache = 'host'
  config_checks.check_config(config)
  config.views = ()
  assert _error(config).startswith('config.views=() is invalid')
  config.one_model_per = ('au', 'au')
  assert _error(config).startswith("config.one_model_per=('au', 'au') ")


def _staged(config):
  with config.unlocked():
    config.stage_order = ('stem', 'lnet')
    config.stages = ml_collections.ConfigDict({
        'stem': {'learning_rate': 1e-3},
        'lnet': {'learning_rate': 1e-4, 'model': {'dropout_rate': 0.1}},
    })
  return config


def test_stages(config):
  config = _staged(config)
  config_checks.check_config(config)
  config.stage_order = ('stem', 'pnet')
  assert _error(config).startswith(
      "config.stage_order=('stem', 'pnet') is invalid: must be distinct "
      "names of config.stages ('lnet', 'stem')")
  config.stage_order = ('stem', 'lnet')
  config.stages.lnet.model.dropout_rate = 1.0
  assert _error(config) == (
      "config.stages.lnet.model.dropout_rate=1.0 is invalid: must be a "
      "number in [0, 1) (with stage 'lnet' applied).")
  config.stages.lnet.model.dropout_rate = 0.1
  with config.stages.stem.unlocked():
    config.stages.stem.learning_rat = 0.1
  assert _error(config) == (
      'config.stages.stem sets learning_rat, which the base config does not '
      'have; a stage may only set existing fields.')


def test_stage_that_breaks_a_base_field(config):
  """An overlay can make a base field invalid (crop > the stage's resize);
  the error names the base field and the stage."""
  with config.unlocked():
    config.stages = ml_collections.ConfigDict({'small': {'resize_size': 32}})
  assert _error(config) == (
      "config.crop_size=66 is invalid: must be an int in [1, "
      "resize_size=32] (with stage 'small' applied).")


def test_init_from(config):
  with config.unlocked():
    config.init_from = ml_collections.ConfigDict(dict(
        method='classify', dataset=None, dataset_config=None, fold='all',
        view=None, au=None, stage=None, params='^(?!output)',
        config='configs/drml.py:test'))
  config_checks.check_config(config)
  _set(config, 'init_from.fold', 0)
  assert _error(config).startswith('config.init_from.fold=0 is invalid')
  _set(config, 'init_from.fold', 1)
  _set(config, 'init_from.method', 'no_such_method')  # Range in words.
  assert _error(config).startswith(
      "config.init_from.method='no_such_method' is invalid: must be the name "
      'of a file au_jax/methods/<name>.py (have [')
  assert _error(config).endswith(') or None.')
  _set(config, 'init_from.method', 'classify')
  _set(config, 'init_from.workdir', '')
  assert _error(config).startswith("config.init_from.workdir='' is invalid")
  _set(config, 'init_from.workdir', '../../rgb/seed_0')
  config_checks.check_config(config)
  with config.init_from.unlocked():
    config.init_from.weights = 'x'
  assert 'init_from has unknown field' in _error(config)


def test_unchecked_fields(config):
  with config.unlocked():
    config.some_new_knob = 3
  assert config_checks.unchecked_fields(config) == ['some_new_knob']
  config_checks.check_config(config)  # A field with no rule is allowed.
