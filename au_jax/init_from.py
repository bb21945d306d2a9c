"""Starting weights: the run `config.init_from` names, and loading from it.

`config.init_from` names another run by the fields of its directory
(au_jax/runs.py: method, dataset, builder config, fold, view, AU, stage);
an unset field is the starting run's own; `workdir` says where the source
run lives when it is not under this run's workdir (a relative path is taken
from this run's workdir: au_jax.ablate starts one row from another row's
run this way). `load_init_from` copies the
parameters whose names match `config.init_from.params` (a model may first
map another architecture's tree onto its own: `adapt_params`), and fails
with the command that trains the source run when it is missing.
"""

import copy
import os
from typing import Any

import ml_collections

from au_jax.data import folds as folds_lib
from au_jax import runs
from au_jax import checkpointing
from au_jax import optim
import re
import numpy as np
import importlib
from au_jax import models
import flax

INIT_FIELDS = ('method', 'dataset', 'dataset_config', 'fold', 'view', 'au',
               'stage')


def source_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The workdir holding the source run: `init_from.workdir` (relative to
  `workdir`) or, unset, `workdir` itself."""
  other = config.init_from.get('workdir')
  return os.path.normpath(os.path.join(workdir, other)) if other else workdir


def source_run_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The run directory `config.init_from` names; its unset fields (None)
  are this run's own (method, dataset, fold, view, AU, stage). A source
  on another dataset has that dataset's own (standard) fold protocol: a
  k-fold of this run's subjects says nothing about another dataset's."""
  init = config.init_from
  source = copy.deepcopy(config)
  with source.unlocked():
    for field in ('method', 'dataset', 'dataset_config', 'classify_field'):
      if init.get(field) is not None:
        source[field] = init[field]
    if (source.dataset != config.dataset
        and 'fold_protocol' in source):
      source.fold_protocol = folds_lib.STANDARD
      source.num_folds = folds_lib.NUM_FOLDS
  own = {'fold': config.get('run_fold', 1), 'view': config.get('run_view'),
         'au': config.get('run_au'), 'stage': config.get('run_stage')}
  picked = {k: (init.get(k) if init.get(k) is not None else own[k])
            for k in own}
  # 'none' explicitly clears a level (e.g. a per-AU run from a single
  # EmoNet run: au='none').
  picked = {k: (None if v == 'none' else v) for k, v in picked.items()}
  return runs.run_dir(source, source_workdir(config, workdir),
                      runs.RunKey(**picked))


def _missing_source_error(config, workdir, directory) -> FileNotFoundError:
  init = config.init_from
  config_file = init.get('config') or config.get('config_file') or (
      f'configs/{init.get("method") or config.method}.py')
  fold = init.get('fold') or config.get('run_fold', 1)
  command = (f'python -m au_jax.main --config={config_file} '
             f'--workdir={source_workdir(config, workdir)}')
  if fold != runs.ALL:
    command += f' --config.folds={fold}'
  dataset = init.get('dataset')
  if dataset:
    command += f' --config.dataset={dataset}'
  if init.get('dataset_config'):
    command += f' --config.dataset_config={init.dataset_config}'
  return FileNotFoundError(
      f'config.init_from names the run {directory}, which has no finished '
      f'checkpoint. Train it first:\n  {command}')


def load_init_from(config: ml_collections.ConfigDict, workdir: str,
                   variables: dict[str, Any]) -> tuple[dict[str, Any],
                                                       dict[str, Any]]:
  """`variables` ({'params', 'batch_stats'}) with the leaves matching
  `config.init_from.params` copied from the source run.

  Returns (new variables, report) where report lists 'source', 'step',
  'loaded' (names), 'not_in_source' (matched names the source lacks or has
  in another shape) and 'unused_source' (source parameters nothing took).
  Raises FileNotFoundError with the command that trains the source run.
  """
  directory = source_run_dir(config, workdir)
  try:
    raw, step = checkpointing.restore_raw(directory)
  except (FileNotFoundError, ValueError) as error:
    raise _missing_source_error(config, workdir, directory) from error
  # A model may map another architecture's tree onto its own (CAUD heads
  # from EmoNet's fc6/fc7, AUNets' widened or duplicated streams).
  module = importlib.import_module(f'au_jax.models.{config.model_name}')
  if hasattr(module, 'adapt_params') and raw.get('params') is not None:
    raw = dict(raw, params=module.adapt_params(
        models.create(config), raw['params'], variables['params']))
  pattern = re.compile(config.init_from.get('params') or '.*')
  report = {'source': directory, 'step': int(step), 'loaded': [],
            'not_in_source': [], 'unused_source': []}
  result = {}
  for group in ('params', 'batch_stats'):
    target = optim.flat_params(variables.get(group) or {})
    source = optim.flat_params(raw.get(group) or {})
    taken = set()
    new = {}
    for name, value in target.items():
      full = f'{group}/{name}'
      if group == 'params' and not pattern.fullmatch(name):
        new[name] = value
        continue
      if group == 'batch_stats' and not pattern.fullmatch(
          name.rsplit('/', 1)[0] + '/scale') and not pattern.fullmatch(name):
        new[name] = value
        continue
      if name in source and np.shape(source[name]) == np.shape(value):
        new[name] = np.asarray(source[name], np.asarray(value).dtype)
        taken.add(name)
        report['loaded'].append(full)
      else:
        new[name] = value
        shape = np.shape(source[name]) if name in source else None
        report['not_in_source'].append(
            f'{full} {tuple(np.shape(value))}' + (
                f' (source {tuple(shape)})' if shape is not None else ''))
    report['unused_source'] += [f'{group}/{n}' for n in source
                                if n not in taken]
    result[group] = flax.traverse_util.unflatten_dict(
        {tuple(k.split('/')): v for k, v in new.items()})
  if not report['loaded']:
    raise ValueError(
        f'config.init_from.params={pattern.pattern!r} matched no parameter '
        f'of {directory} with the same name and shape; parameters that '
        f'matched the regex: {report["not_in_source"][:10]}.')
  return result, report
