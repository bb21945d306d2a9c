"""Run plans: which runs a fold needs (per stage, view, AU) and where each lives.

A config describes a *method*; training it may take several runs:
  * `config.one_model_per`: () one model for the fold (DRML, LP-Net, CAUD),
    ('au',) one model per AU (AUNets), ('view', 'au') one per view and AU
    (AUNets' FERA 2017 cascade; with `config.adapt_views_from` = v every
    other view's run starts from view v's finished run, `run_config`);
  * `config.stage_order`: ordered stage names (LP-Net: 'stem', 'lnet',
    'pnet'), each with an overlay `config.stages[name]` that may only set
    fields the base config already has (a typo is an error, not a new field).
Each run is keyed by `RunKey(fold | 'all', view, au, stage)` and trained with
its own config (`run_config`) in its own directory (`run_dir`):

  workdir/<dataset>-<dataset_config>/<method>/{fold_<k>|all}[/view_<v>]
         [/au_<nn>][/stage_<name>]

The dataset's builder config is part of the path, so a run on
`synthetic_au/tiny` never shares checkpoints with one on
`synthetic_au/default`.
"""

import copy
import dataclasses
import os
from typing import Any, Iterator

import ml_collections

from au_jax import aus as aus_lib
from au_jax.data import folds as folds_lib
from au_jax import evaluate

ALL = 'all'  # Train on every subject of the dataset (cross-dataset runs).
PER_MODEL_AXES = ('view', 'au')


@dataclasses.dataclass(frozen=True)
class RunKey:
  """One trained model: fold (int or 'all'), view, AU and stage (or None)."""
  fold: int | str
  view: int | None = None
  au: int | None = None
  stage: str | None = None

  def parts(self) -> list[str]:
    """Directory names below `<workdir>/<dataset>/<method>/`."""
    parts = [ALL if self.fold == ALL else f'fold_{int(self.fold)}']
    if self.view is not None:
      parts.append(f'view_{int(self.view)}')
    if self.au is not None:
      parts.append(f'au_{int(self.au):02d}')
    if self.stage is not None:
      parts.append(f'stage_{self.stage}')
    return parts

  def __str__(self) -> str:
    return '/'.join(self.parts())


def dataset_dir_name(config: ml_collections.ConfigDict) -> str:
  """'<dataset>-<builder config>' ('bp4d-crop', 'synthetic_au-default')."""
  name = config.dataset
  if config.get('dataset_config'):
    name += f'-{config.dataset_config}'
  return name


def method_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """`workdir/<dataset>-<config>/<method>` as an absolute path; a
  `classify` run is `classify_<field>`, so EmoNet (emotion) and a view
  classifier on the same data never share a directory. A k-fold protocol
  adds a level, `<method>/kfold<k>_seed<s>` (folds.Protocol.dir_name), so
  its folds never share runs or tables with the standard 3 folds."""
  method = config.method
  if method == 'classify' and config.get('classify_field'):
    method = f'classify_{config.classify_field}'
  parts = [os.path.expanduser(workdir), dataset_dir_name(config), method]
  protocol_dir = folds_lib.config_protocol(config).dir_name
  if protocol_dir:
    parts.append(protocol_dir)
  return os.path.abspath(os.path.join(*parts))


def run_dir(config: ml_collections.ConfigDict, workdir: str,
            key: 'RunKey | int | str') -> str:
  """The directory of run `key` (an int/'all' means that fold, one model)."""
  if not isinstance(key, RunKey):
    key = RunKey(key)
  return os.path.join(method_dir(config, workdir), *key.parts())


# ----------------------------------------------------------------------------
# Cross-dataset protocol (config.test_dataset): train on every subject of
# config.dataset (fold 'all'), test on every subject of the test dataset over
# the AUs both label. Training never reads the test dataset, so the trained
# run (its directory, checkpoints and fingerprint) is the same whatever it is
# tested on; each test dataset's results go to their own directory below it:
#   <run dir>/test_<test_dataset>-<config>/test_results.{json,md}
#   <method dir>/test_<test_dataset>-<config>/results.{json,md}
# so a within-dataset table, and tests on two datasets, never overwrite
# each other, and testing a trained 'all' run on a new dataset trains nothing.


def test_dataset_dir_name(config: ml_collections.ConfigDict) -> str | None:
  """'test_<dataset>-<config>' of config.test_dataset, or None (within-
  dataset)."""
  if not config.get('test_dataset'):
    return None
  name = config.test_dataset
  if config.get('test_dataset_config'):
    name += f'-{config.test_dataset_config}'
  return f'test_{name}'


def test_dir(config: ml_collections.ConfigDict, directory: str) -> str:
  """Where run (or fold) `directory`'s test results go."""
  name = test_dataset_dir_name(config)
  return os.path.join(directory, name) if name else directory


def results_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Where the cross-fold (or cross-dataset) table goes."""
  return test_dir(config, method_dir(config, workdir))


def folds_of(config: ml_collections.ConfigDict) -> tuple[int | str, ...]:
  """config.folds as fold numbers, or ('all',)."""
  if str(config.folds).strip() == ALL:
    return (ALL,)
  return folds_lib.parse_folds(
      config.folds, folds_lib.config_protocol(config).num_folds)


def check_cross_dataset(config: ml_collections.ConfigDict
                        ) -> tuple[int, ...] | None:
  """None within a dataset; for a cross-dataset config, the AUs it is scored
  on (evaluate.cross_dataset_aus), after errors for settings the protocol
  does not have."""
  if not config.get('test_dataset'):
    return None
  if folds_of(config) != (ALL,):
    raise ValueError(
        f'config.test_dataset={config.test_dataset!r} (cross-dataset '
        f'protocol) trains on every subject of {config.dataset}, but '
        f'config.folds={config.folds!r}: set --config.folds=all.')
  if (config.test_dataset == config.dataset and
      (config.get('test_dataset_config') or None) ==
      (config.get('dataset_config') or None)):
    raise ValueError(
        f'config.test_dataset={config.test_dataset!r} with builder config '
        f'{config.get("test_dataset_config")!r} is the training data itself '
        '(fold all trains on its subjects); name another dataset or builder '
        'config.')
  if config.method == 'classify':
    raise ValueError('config.test_dataset: the cross-dataset protocol scores '
                     'AUs; classify runs have no AU outputs.')
  if 'view' in tuple(config.get('one_model_per') or ()):
    raise ValueError(
        "config.test_dataset with one_model_per containing 'view': per-view "
        'models cannot be routed on another dataset; au_jax does not '
        'support it.')
  return evaluate.cross_dataset_aus(config.aus, config.test_dataset)


def apply_overlay(config: ml_collections.ConfigDict,
                  overlay: Any, where: str) -> ml_collections.ConfigDict:
  """A copy of `config` with `overlay`'s fields set; a field the config does
  not have is an error naming it and `where` (overlays never add fields)."""
  config = copy.deepcopy(config)
  items = overlay.items() if overlay is not None else ()
  with config.unlocked():
    for field, value in items:
      if field not in config:
        raise ValueError(
            f'{where} sets config.{field}, which the base config does not '
            f'have; overlays may only set existing fields (known: '
            f'{sorted(config.keys())}).')
      current = config[field]
      if (isinstance(current, ml_collections.ConfigDict)
          and hasattr(value, 'items')):
        config[field] = apply_overlay(current, value, f'{where}.{field}')
      elif isinstance(value, ml_collections.ConfigDict):
        config[field] = copy.deepcopy(value)
      else:
        config[field] = value
  return config


def stage_names(config: ml_collections.ConfigDict) -> tuple[str | None, ...]:
  """The config's stages in order; (None,) for a single-stage method."""
  order = tuple(config.get('stage_order') or ())
  stages = config.get('stages') or {}
  for name in order:
    if name not in stages:
      raise ValueError(f'config.stage_order names stage {name!r}, but '
                       f'config.stages has {sorted(stages.keys())}.')
  return order or (None,)


def _views(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  views = tuple(config.get('views') or ())
  if not views:
    raise ValueError("config.one_model_per has 'view' but config.views is "
                     'empty: list the views to train (e.g. (1, 2, ..., 9)).')
  return views


def _adapt_view(config: ml_collections.ConfigDict) -> int | None:
  """config.adapt_views_from as a view id, or None (unset or -1: every
  view starts from config.init_from)."""
  view = config.get('adapt_views_from')
  return None if view is None or view == -1 else int(view)


def plan(config: ml_collections.ConfigDict) -> list[RunKey]:
  """Every run `config` asks for, in the order they must train.

  Folds come from `config.folds` ('all' trains on every subject; with
  `config.test_dataset` it must be 'all', see `check_cross_dataset`). Within a
  fold: views, then AUs, then stages in order, so a stage can start from the
  previous stage of the same fold/view/AU, and the frontal view's models
  exist before other views adapt from them (list the frontal view first in
  `config.views`).
  """
  per = tuple(config.get('one_model_per') or ())
  unknown = sorted(set(per) - set(PER_MODEL_AXES))
  if unknown:
    raise ValueError(f'config.one_model_per={per}: unknown axis {unknown}; '
                     f'use a subset of {PER_MODEL_AXES}.')
  folds = folds_of(config)
  shared = check_cross_dataset(config)
  views = _views(config) if 'view' in per else (None,)
  au_list = aus_lib.check_aus(config.aus) if 'au' in per else (None,)
  if shared is not None and 'au' in per:
    # One model per AU: the AUs the test dataset lacks are not trained.
    au_list = shared
  adapt_from = _adapt_view(config)
  if adapt_from is not None:
    if 'view' not in per or not views or views[0] != adapt_from:
      raise ValueError(
          f'config.adapt_views_from={adapt_from!r}: the other views start '
          f"from this view's models, so it must be the first of "
          f"config.views={tuple(config.get('views') or ())} with "
          f"one_model_per containing 'view' (got {per}).")
  stages = stage_names(config)
  return [RunKey(fold, view, au, stage)
          for fold in folds for view in views for au in au_list
          for stage in stages]


def run_config(config: ml_collections.ConfigDict,
               key: RunKey) -> ml_collections.ConfigDict:
  """The config run `key` trains with: the stage overlay applied, the AU
  list cut to the run's AU and the data to the run's view.

  The result has `run_fold`, `run_view`, `run_au`, `run_stage` set, so a
  trainer (and the fingerprint) knows which run it is.
  """
  result = config
  if key.stage is not None:
    result = apply_overlay(config, config.stages[key.stage],
                           f'config.stages.{key.stage}')
  result = copy.deepcopy(result)
  with result.unlocked():
    if key.au is not None:
      result.aus = (int(key.au),)
    if key.view is not None:
      result.views = (int(key.view),)
    adapt_from = _adapt_view(result)
    if (adapt_from is not None and key.view is not None
        and int(key.view) != int(adapt_from)):
      # AUNets' domain adaptation: every other view starts from the
      # adapt_views_from view's finished model of the same fold, AU and
      # stage (the paper: frontal from the BP4D models, the rest from the
      # frontal one); that view itself keeps config.init_from.
      result.init_from = ml_collections.ConfigDict(dict(
          method=None, dataset=None, dataset_config=None, fold=None,
          view=int(adapt_from), au=None, stage=None, params=None,
          config=None, classify_field=None))
    result.run_fold = key.fold
    result.run_view = key.view
    result.run_au = key.au
    result.run_stage = key.stage
  return result


def iter_runs(config: ml_collections.ConfigDict
              ) -> Iterator[tuple[RunKey, ml_collections.ConfigDict]]:
  """(key, run_config) for every run of the plan, in order."""
  for key in plan(config):
    yield key, run_config(config, key)
