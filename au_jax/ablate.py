r"""Ablation runner: rows of config overrides x seeds -> one Markdown table
(and figure); `python -m au_jax.ablate plot OUT.png A.json [B.json ...]`
draws finished tables (several workdirs merged) without training.

  python -m au_jax.ablate --config=configs/lpnet.py:ablation \
      --rows=Stem-Net,Stem-Net+L-Net,LP-Net --seeds=0,1 --workdir=/tmp/ablate

The config module defines the rows as a plain dict

  ABLATION = {'row name': {'field': value, 'stages.pnet.field': value}, ...}

(dotted keys reach into nested ConfigDicts; a row may set `stage_order` to
stop a staged method early). Each (row, seed) trains with
`au_jax.train.train_and_evaluate` in its own workdir
`<workdir>/<row>/seed_<s>` with `config.seed = s`; the table is built from
each run's `<dataset>-<config>/<method>/results.json`.

Shared runs: a run (stage) whose config fingerprint and whose chain of
earlier stages equal those of a run already trained for another row with
the same seed is not trained again: its directory is symlinked into the
row's workdir and the stage is dropped from the row's stage_order, so the
next stage's `init_from` reads it through the link (e.g. the pretraining
and Stem-Net stages that the +L-Net and LP-Net rows start from). So every
row gets the same budget per stage, and shared stages are the very same
runs for all rows. A row equal to an earlier one copies its results.

Written (atomically, after every finished (row, seed), so a partial table
can be read while the ablation runs): `<workdir>/ablation.md`,
`<workdir>/ablation.json`, each run's numbers and step budget in
`<workdir>/ablation_seeds.json` (what `python docs/tables.py collect` turns
into a committed docs/results/ file) and a figure, `<workdir>/ablation.png`
(`python -m au_jax.ablate plot OUT.png A.json B.json` draws several
workdirs' tables as one). The note under the table says which differences
between consecutive rows exceed the spread between seeds (the seeds' mean
F1 ranges do not overlap); only those count.
"""


import argparse
import copy
import hashlib
import importlib.util
import itertools
import json
import os
import shutil
import sys
import time
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags
import numpy as np

from au_jax import checkpointing
from au_jax import runs
from au_jax import tables
from au_jax import train
from au_jax import visualize

MARKER = 'ablation_run.json'


# ----------------------------------------------------------------------------
# Rows and configs

def load_rows(config_path: str) -> dict[str, dict[str, Any]]:
  """The ABLATION dict of the config module `path[:variant]`."""
  path = config_path.split(':', 1)[0]
  if not os.path.isfile(path):
    raise FileNotFoundError(f'ablate: config file {path!r} does not exist.')
  spec = importlib.util.spec_from_file_location('_ablation_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rows = getattr(module, 'ABLATION', None)
  if not isinstance(rows, Mapping) or not rows:
    raise ValueError(f'ablate: {path} defines no ABLATION dict (row name -> '
                     'dict of config overrides).')
  return {str(name): dict(overrides) for name, overrides in rows.items()}


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any],
                    where: str = 'row') -> ml_collections.ConfigDict:
  """A copy of `config` with dotted-key overrides set.

  The parent of every key must exist; the last part may be new only inside
  a stage overlay (`stages.<name>.<field>`, which the trainer checks against
  the base config's fields).
  """
  result = copy.deepcopy(config)
  for dotted, value in overrides.items():
    parts = dotted.split('.')
    node = result
    for i, part in enumerate(parts[:-1]):
      if part not in node:
        raise KeyError(f'ablate: {where} sets {dotted!r}, but the config has '
                       f'no {".".join(parts[:i + 1])!r}.')
      node = node[part]
    last = parts[-1]
    in_stage = len(parts) == 3 and parts[0] == 'stages'
    if last not in node and not in_stage:
      raise KeyError(f'ablate: {where} sets {dotted!r}, which is not a field '
                     'of the config.')
    if isinstance(value, dict):
      value = ml_collections.ConfigDict(value)
    with node.unlocked():
      node[last] = value  # A ConfigDict value replaces, never merges.
  return result


def row_config(base: ml_collections.ConfigDict, name: str,
               overrides: Mapping[str, Any],
               seed: int) -> ml_collections.ConfigDict:
  config = apply_overrides(base, overrides, where=f'row {name!r}')
  with config.unlocked():
    config.seed = int(seed)
    start = start_row(config)
    if start is not None:
      fields = {k: v for k, v in config.init_from.items() if k != 'row'}
      fields['workdir'] = os.path.join('..', '..', start, f'seed_{seed}')
      config.init_from = ml_collections.ConfigDict(fields)
  return config


def start_row(config: ml_collections.ConfigDict) -> str | None:
  """The row whose run `config` (a row's, before row_config) starts from."""
  init = config.get('init_from')
  return init.get('row') if isinstance(
      init, (ml_collections.ConfigDict, dict)) else None


def check_start_rows(base: ml_collections.ConfigDict,
                     rows: Mapping[str, Mapping[str, Any]],
                     row_names: Sequence[str], seeds: Sequence[int],
                     workdir: str) -> None:
  """Each row that starts from another row comes after it in `row_names`
  or finds it finished in `workdir`; else a ValueError naming both."""
  for index, name in enumerate(row_names):
    start = start_row(apply_overrides(base, rows[name], where=f'row {name!r}'))
    if start is None or start in row_names[:index]:
      continue
    if start not in rows:
      raise ValueError(f'ablate: row {name!r} starts from row {start!r}, '
                       f'which the config does not define ({list(rows)}).')
    for seed in seeds:
      config = row_config(base, start, rows[start], seed)
      path = results_path(config, os.path.join(workdir, start,
                                               f'seed_{seed}'))
      if not os.path.exists(path):
        raise ValueError(
            f'ablate: row {name!r} starts from row {start!r} (seed {seed}), '
            f'which is not finished in {workdir}: list {start!r} before '
            f'{name!r} in --rows.')


def run_chain(config: ml_collections.ConfigDict,
              workdir: str) -> list[tuple[str, str, str | None]]:
  """(chain hash, run directory, stage) of every run of `config`'s plan.

  A chain hash covers the run's config fingerprint and step count and those
  of the runs before it in the same fold/view/AU (the stages it starts
  from). The fingerprint leaves num_train_steps out (a run may be extended),
  but two rows whose runs differ only in their steps share nothing.
  """
  out, previous = [], {}
  for key, cfg in runs.iter_runs(config):
    lineage = (key.fold, key.view, key.au)
    # The fingerprint leaves the fold out (the run directory names it), so
    # the chain names it: fold 2 or 'all' never shares fold 1's run.
    start = '' if key.fold == 1 else f'fold {key.fold};'
    text = (previous.get(lineage, start) + checkpointing.fingerprint(cfg)['hash']
            + f';steps {cfg.num_train_steps}')
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    previous[lineage] = digest
    out.append((digest, runs.run_dir(cfg, workdir, key), key.stage))
  return out


def link_shared_runs(chain: Sequence[tuple[str, str, str | None]],
                     trained: Mapping[str, str]) -> set[str]:
  """Symlinks runs trained for an earlier row (same chain hash) into place.

  Returns the chain hashes that are shared (linked now or before).
  """
  shared = set()
  for digest, directory, _ in chain:
    source = trained.get(digest)
    if source is None or os.path.realpath(source) == os.path.realpath(
        directory):
      continue
    shared.add(digest)
    if os.path.islink(directory) and os.path.realpath(
        directory) == os.path.realpath(source):
      continue  # Linked by an earlier invocation.
    if os.path.lexists(directory):
      if not os.path.islink(directory):
        raise ValueError(
            f'ablate: {directory} is a trained run of its own, but the same '
            f'run was trained in {source}; remove one of them.')
      os.remove(directory)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    os.symlink(os.path.realpath(source), directory)
  return shared


def unshared_config(config: ml_collections.ConfigDict,
                    chain: Sequence[tuple[str, str, str | None]],
                    shared: set[str]) -> ml_collections.ConfigDict | None:
  """`config` with the stages whose runs are all shared dropped from
  stage_order (they are linked, not re-run: their init_from successors read
  them through the links); None when every run is shared."""
  if not shared:
    return config
  if all(digest in shared for digest, _, _ in chain):
    return None
  stages = {stage for _, _, stage in chain}
  if None in stages:
    raise ValueError('ablate: a single-stage config cannot share only some '
                     'of its runs.')
  dropped = {stage for stage in stages
             if all(d in shared for d, _, s in chain if s == stage)}
  keep = tuple(s for s in config.stage_order if s not in dropped)
  result = apply_overrides(config, {'stage_order': keep})
  return result


# ----------------------------------------------------------------------------
# Running

def results_path(config: ml_collections.ConfigDict, workdir: str) -> str:
  # Cross-dataset rows: <method dir>/test_<dataset>-<config>/results.json.
  return os.path.join(runs.results_dir(config, workdir), 'results.json')


def path_tail(path: str) -> str:
  """'test_<dataset>-<config>' of a cross-dataset results path, else ''
  (rows equal in training but tested elsewhere have other results)."""
  parent = os.path.basename(os.path.dirname(path))
  return parent if parent.startswith('test_') else ''


def run_ablation(base: ml_collections.ConfigDict,
                 rows: Mapping[str, Mapping[str, Any]],
                 row_names: Sequence[str], seeds: Sequence[int],
                 workdir: str, metric: str = 'f1',
                 train_missing: bool = True) -> dict[str, Any]:
  """Trains every (row, seed) not finished yet and returns the table.

  With train_missing=False nothing is trained: a (row, seed) without a
  finished run is an error naming it (tables only).
  """
  unknown = [r for r in row_names if r not in rows]
  if unknown:
    raise ValueError(f'ablate: unknown rows {unknown}; the config defines '
                     f'{list(rows)}.')
  check_start_rows(base, rows, row_names, seeds, workdir)
  results = {name: {} for name in row_names}
  trained = {s: {} for s in seeds}  # chain hash -> run directory
  finished = {s: {} for s in seeds}  # last chain hash -> results.json
  timings = {}
  table = None
  per_seed = {name: {} for name in row_names}
  for seed, name in itertools.product(seeds, row_names):
    config = row_config(base, name, rows[name], seed)
    run_workdir = os.path.join(workdir, name, f'seed_{seed}')
    chain = run_chain(config, run_workdir)
    marker = os.path.join(run_workdir, MARKER)
    stamp = {'row': name, 'seed': int(seed), 'overrides': repr(rows[name]),
             'chain': [d for d, _, _ in chain]}
    path = results_path(config, run_workdir)
    done = False
    if os.path.exists(marker) and os.path.exists(path):
      with open(marker) as f:
        done = json.load(f) == stamp
    shared = link_shared_runs(chain, trained[seed])
    to_train = unshared_config(config, chain, shared)
    if done:
      print(f'ablate: {name} seed {seed} already done ({path}).')
    elif not train_missing and to_train is not None:
      raise FileNotFoundError(
          f'ablate: {name} seed {seed} has no finished run in {run_workdir} '
          '(--train=false trains nothing; drop it to train the row).')
    elif to_train is None and (chain[-1][0], path_tail(path)) not in (
        finished[seed]):
      # Every run shared with a row tested on another dataset (the test
      # dataset does not change training): test the linked runs here.
      print(f'ablate: {name} seed {seed} shares its runs; testing them on '
            f'{config.test_dataset}/{config.get("test_dataset_config")}.',
            flush=True)
      train.train_and_evaluate(config, run_workdir)
    elif to_train is None:
      source = finished[seed][(chain[-1][0], path_tail(path))]
      print(f'ablate: {name} seed {seed} equals a trained row; results '
            f'from {source}.')
      os.makedirs(os.path.dirname(path), exist_ok=True)
      shutil.copyfile(source, path)
    else:
      print(f'ablate: training {name} seed {seed} (stages '
            f'{tuple(to_train.get("stage_order") or ())}) in {run_workdir}'
            + (f'; {len(shared)} shared runs linked' if shared else ''),
            flush=True)
      start = time.time()
      train.train_and_evaluate(to_train, run_workdir)
      timings[f'{name}/seed_{seed}'] = time.time() - start
    if not done:
      with open(marker, 'w') as f:
        json.dump(stamp, f)
    for digest, directory, _ in chain:
      trained[seed].setdefault(digest, directory)
    finished[seed].setdefault((chain[-1][0], path_tail(path)), path)
    with open(path) as f:
      results[name][seed] = json.load(f)
    per_seed[name][str(seed)] = dict(
        digest_results(results[name][seed]), **run_facts(config),
        overrides=repr(rows[name]),
        results=os.path.relpath(path, workdir))
    table = aggregate(results, config.aus, metric)
    table['timings_s'] = timings
    write_table(table, workdir)
    write_seeds(per_seed, workdir)
  return table


# ----------------------------------------------------------------------------
# Per-seed results, small enough to commit (docs/results/, docs/tables.py)

SEEDS_FILE = 'ablation_seeds.json'


def digest_results(results: Mapping[str, Any]) -> dict[str, Any]:
  """The numbers of a results.json a table can be made from: 'mean' and
  'per_au' (their numeric entries), 'num_frames', 'aus', and per fold the
  kept checkpoint's step and the test / validation subjects; per-frame
  predictions are dropped."""
  def numbers(entry: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in entry.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
  out = {'aus': [int(a) for a in results.get('aus', ())],
         'num_frames': int(results.get('num_frames', 0)),
         'mean': numbers(results['mean']),
         'per_au': {str(au): numbers(entry)
                    for au, entry in results['per_au'].items()}}
  folds = results.get('folds')
  if isinstance(folds, Mapping):
    out['folds'] = {
        str(k): {f: v[f] for f in ('checkpoint_step', 'test_subjects',
                                   'validation_subjects') if f in v}
        for k, v in folds.items() if isinstance(v, Mapping)}
  for key in ('fold_protocol', 'std_mean_f1'):
    if key in results:
      out[key] = results[key]
  return out


def run_facts(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a table must say about a run's budget: its seed, whether 'f1'
  used thresholds tuned on validation, and the training steps of each of
  its stages in order (stage None for a single-stage method)."""
  steps = {}
  for stage in runs.stage_names(config):
    staged = (config if stage is None else runs.apply_overlay(
        config, config.stages[stage], f'config.stages.{stage}'))
    steps[str(stage)] = int(staged.num_train_steps)
  return {'seed': int(config.seed), 'method': config.method,
          'dataset': f'{config.dataset}/{config.get("dataset_config")}',
          'tune_thresholds': bool(config.get('tune_thresholds', False)),
          'stage_steps': steps}


def write_seeds(per_seed: Mapping[str, Mapping[str, Any]],
                workdir: str) -> str:
  """`<workdir>/ablation_seeds.json`: row -> seed -> digest, atomically."""
  path = os.path.join(workdir, SEEDS_FILE)
  text = json.dumps({'rows': per_seed}, indent=1, sort_keys=False)
  tables.write_atomic(path, lambda f: f.write(text + '\n'))
  return path


def _parse_list(text: str, kind=str) -> list[Any]:
  return [kind(x) for x in text.split(',') if x.strip()]


def main(argv: Sequence[str]) -> None:
  del argv
  flags_ = flags.FLAGS
  config_path = config_flags.get_config_filename(flags_['config'])
  rows = load_rows(config_path)
  row_names = _parse_list(flags_.rows) if flags_.rows else list(rows)
  seeds = _parse_list(flags_.seeds, int)
  start = time.time()
  table = run_ablation(flags_.config, rows, row_names, seeds,
                       flags_.workdir, flags_.metric, flags_.train)
  print(markdown(table))
  json_path, md_path = write_table(table, flags_.workdir)
  print(f'ablate: {len(row_names)} rows x {len(seeds)} seeds in '
        f'{(time.time() - start) / 60:.1f} min; written {md_path} and '
        f'{json_path}')


def _au_f1(results: Mapping[str, Any], au: int, metric: str) -> float:
  entry = results['per_au'].get(str(au), results['per_au'].get(au))
  if entry is None:
    raise KeyError(f'ablate: results have no AU {au} (per_au keys '
                   f'{sorted(results["per_au"])}).')
  if metric not in entry:
    raise KeyError(f'ablate: results have no {metric!r} for AU {au} (have '
                   f'{sorted(entry)}).')
  return float(entry[metric])


def aggregate(results: Mapping[str, Mapping[int, Mapping[str, Any]]],
              aus: Sequence[int], metric: str = 'f1') -> dict[str, Any]:
  """Rows x seeds of results dicts -> the ablation table.

  Args:
    results: row -> seed -> results dict ('per_au' {au: {'f1'}}, 'mean'
      {'f1'}), as in a method's results.json. Rows keep their order.
    aus: the AU columns.
    metric: the per-AU and mean key ('f1': thresholds as the run chose
      them; 'f1_at_05': threshold 0.5, where the runs report it).

  Returns:
    {'aus', 'metric', 'rows': {row: {'seeds', 'per_au_f1' (mean over
    seeds), 'mean_f1' (mean over seeds of each seed's mean; named F1 for
    any metric), 'seed_mean_f1' [S], 'min',
    'max', 'half_range', 'std' (ddof 1; 0 for one seed), 'floor' (the
    seeds' mean all-positive F1, results' mean 'baseline_f1', where every
    seed has it)}}, 'comparisons':
    [consecutive row pairs: 'a', 'b', 'difference' (b - a), 'separated'
    (seed ranges do not overlap; None when a row has one seed)]}.
  """
  rows = {}
  for name, by_seed in results.items():
    if not by_seed:
      continue
    seeds = sorted(by_seed)
    per_seed = np.array([[_au_f1(by_seed[s], au, metric) for au in aus]
                         for s in seeds])  # [S, C]
    means = np.array([float(by_seed[s]['mean'][metric]) for s in seeds])
    rows[name] = {
        'seeds': [int(s) for s in seeds],
        'per_au_f1': {str(au): float(v)
                      for au, v in zip(aus, per_seed.mean(axis=0))},
        'mean_f1': float(means.mean()),
        'seed_mean_f1': [float(m) for m in means],
        'min': float(means.min()), 'max': float(means.max()),
        'half_range': float((means.max() - means.min()) / 2),
        'std': float(means.std(ddof=1)) if len(means) > 1 else 0.0,
    }
    floors = [by_seed[s]['mean'].get('baseline_f1') for s in seeds]
    if all(f is not None for f in floors):
      rows[name]['floor'] = float(np.mean(floors))
  comparisons = []
  names = list(rows)
  for a, b in zip(names, names[1:]):
    ra, rb = rows[a], rows[b]
    comparisons.append({
        'a': a, 'b': b, 'difference': rb['mean_f1'] - ra['mean_f1'],
        'separated': (
            None if min(len(ra['seeds']), len(rb['seeds'])) < 2 else
            bool(rb['min'] > ra['max'] or ra['min'] > rb['max'])),
    })
  return {'aus': [int(au) for au in aus], 'metric': metric, 'rows': rows,
          'comparisons': comparisons}


def _label(metric: str) -> str:
  """How a metric key reads in a table or on an axis."""
  return {'f1': 'F1', 'f1_at_05': 'F1@0.5'}.get(metric, metric)


def markdown(table: Mapping[str, Any]) -> str:
  """The table as Markdown: per-AU F1 (mean over seeds), mean F1 as mean
  +- half-range (and std), each seed's mean F1, then the spread note."""
  aus = table['aus']
  seeds = sorted({s for r in table['rows'].values() for s in r['seeds']})
  label = _label(table.get('metric', 'f1'))
  head = (['row'] + [f'AU{au}' for au in aus]
          + [f'mean {label} (± half-range)', 'std']
          + [f'seed {s}' for s in seeds])
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|']
  for name, row in table['rows'].items():
    by_seed = dict(zip(row['seeds'], row['seed_mean_f1']))
    cells = ([name] + [f'{row["per_au_f1"][str(au)]:.1f}' for au in aus]
             + [f'{row["mean_f1"]:.1f} ± {row["half_range"]:.1f}',
                f'{row["std"]:.1f}']
             + [f'{by_seed[s]:.1f}' if s in by_seed else '-' for s in seeds])
    lines.append('| ' + ' | '.join(cells) + ' |')
  notes = []
  for c in table['comparisons']:
    verdict = {True: 'exceeds the seed spread',
               False: 'within the seed spread (does not count)',
               None: 'one seed only, no spread to judge by'}[c['separated']]
    notes.append(f'- {c["a"]} -> {c["b"]}: {c["difference"]:+.1f} mean '
                 f'{label}, {verdict}.')
  if notes:
    lines += ['', f'A difference counts only where the seeds\' mean {label} '
              'ranges of the two rows do not overlap:'] + notes
  return '\n'.join(lines) + '\n'


def write_table(table: Mapping[str, Any], workdir: str) -> tuple[str, str]:
  """`<workdir>/ablation.json`, `.md` and `.png` (`ablation_<metric>.*`
  for a metric other than 'f1'), each written atomically."""
  os.makedirs(workdir, exist_ok=True)
  metric = table.get('metric', 'f1')
  stem = 'ablation' if metric == 'f1' else f'ablation_{metric}'
  json_path = os.path.join(workdir, stem + '.json')
  md_path = os.path.join(workdir, stem + '.md')
  text = json.dumps(table, indent=1)
  md = markdown(table)
  write = tables.write_atomic
  write(json_path, lambda f: f.write(text + '\n'))
  write(md_path, lambda f: f.write(md))
  plot(table, os.path.join(workdir, stem + '.png'))
  return json_path, md_path


def merge(tables: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """One table from several (e.g. two ablation workdirs of the same AUs and
  metric): rows in order, a row name already taken keeps its first table's
  values; comparisons are dropped (recompute from the rows if needed)."""
  first = tables[0]
  for table in tables[1:]:
    if (table['aus'], table['metric']) != (first['aus'], first['metric']):
      raise ValueError(
          f'ablate plot: cannot merge a table of AUs {table["aus"]} / '
          f'{table["metric"]!r} into one of {first["aus"]} / '
          f'{first["metric"]!r}.')
  rows = {}
  for table in tables:
    for name, row in table['rows'].items():
      rows.setdefault(name, row)
  return {'aus': first['aus'], 'metric': first['metric'], 'rows': rows}


def plot(table: Mapping[str, Any], path: str, title: str = '') -> str:
  """Each row's seeds' mean F1 as dots, their mean as a bar with the
  half-range, and the all-positive floor as a dashed line (where the rows
  carry one): where people would rather look than read the table."""
  plt = visualize.plt
  names = list(table['rows'])
  figure, axis = plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.2))
  for y, name in enumerate(names):
    row = table['rows'][name]
    axis.barh(y, row['mean_f1'], xerr=row['half_range'], color='#9ecae1',
              ecolor='#3182bd', capsize=3, height=0.6)
    axis.plot(row['seed_mean_f1'], [y] * len(row['seed_mean_f1']), 'o',
              color='#08519c', markersize=4)
  floors = [r['floor'] for r in table['rows'].values() if 'floor' in r]
  if floors and len(floors) == len(names):
    axis.axvline(float(np.mean(floors)), color='#e6550d', linestyle='--',
                 label=f'all-positive F1 {np.mean(floors):.1f}')
    axis.legend(loc='lower right', fontsize=8)
  values = [v for r in table['rows'].values() for v in r['seed_mean_f1']]
  low = min(values + floors) if values else 0.0
  axis.set_xlim(max(0.0, low - 10), min(100.0, max(values) + 5))
  axis.set_yticks(range(len(names)), names)
  axis.invert_yaxis()
  axis.set_xlabel(f'mean {_label(table["metric"])} over AUs '
                  f'{table["aus"]}; dots: seeds, bar: mean ± half-range')
  if title:
    axis.set_title(title, fontsize=10)
  return visualize._save(figure, path)  # pylint: disable=protected-access


def plot_main(argv: Sequence[str]) -> None:
  """python -m au_jax.ablate plot OUT.png TABLE.json [TABLE.json ...]
  [--title=TEXT]: the merged tables' rows as a figure."""
  parser = argparse.ArgumentParser(prog='python -m au_jax.ablate plot')
  parser.add_argument('out')
  parser.add_argument('tables', nargs='+', help='ablation*.json files')
  parser.add_argument('--title', default='')
  args = parser.parse_args(argv)
  tables = []
  for path in args.tables:
    try:
      with open(path) as f:
        tables.append(json.load(f))
    except (OSError, ValueError) as error:
      parser.error(f'{path}: not a readable ablation table ({error}).')
  print(f'Written {plot(merge(tables), args.out, args.title)}')


if __name__ == '__main__':
  if sys.argv[1:2] == ['plot']:  # Tables -> one figure, no training.
    plot_main(sys.argv[2:])
  else:
    flags.DEFINE_string('workdir', 'ablation', 'Rows train in '
                        '<workdir>/<row>/seed_<s>; the table goes to '
                        '<workdir>/ablation.{md,json}.')
    flags.DEFINE_string('rows', '', 'Comma-separated ABLATION row names, in '
                        'table order (default: all, in the config\'s order).')
    flags.DEFINE_string('seeds', '0', 'Comma-separated seeds.')
    flags.DEFINE_bool('train', True, 'False: only build the table from '
                      'finished runs; a missing one is an error.')
    flags.DEFINE_string('metric', 'f1', "Per-AU results key of the table: 'f1' "
                        "(the run's thresholds) or 'f1_at_05'.")
    config_flags.DEFINE_config_file(
        'config', None, 'Config file with an ABLATION dict, '
        'e.g. configs/lpnet.py:ablation.', lock_config=False)
    flags.mark_flags_as_required(['config'])
    try:
      app.run(main)
    except (ValueError, KeyError, FileNotFoundError) as error:
      sys.exit(f'au_jax.ablate: {error}')
