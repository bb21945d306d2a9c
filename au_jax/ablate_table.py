"""Ablation tables: rows x seeds of results -> per-AU F1, mean +- half-range
over seeds, and which differences between consecutive rows exceed the seed
spread (au_jax.ablate writes them after every finished (row, seed))."""

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np


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
  from au_jax import tables  # pylint: disable=g-import-not-at-top
  os.makedirs(workdir, exist_ok=True)
  metric = table.get('metric', 'f1')
  stem = 'ablation' if metric == 'f1' else f'ablation_{metric}'
  json_path = os.path.join(workdir, stem + '.json')
  md_path = os.path.join(workdir, stem + '.md')
  text = json.dumps(table, indent=1)
  md = markdown(table)
  write = tables._write_atomic  # pylint: disable=protected-access
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
          f'ablate_table: cannot merge a table of AUs {table["aus"]} / '
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
  from au_jax import visualize  # pylint: disable=g-import-not-at-top
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


def main(argv: Sequence[str]) -> None:
  """python -m au_jax.ablate_table OUT.png TABLE.json [TABLE.json ...]
  [--title=TEXT]: the merged tables' rows as a figure."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog='python -m au_jax.ablate_table')
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
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
