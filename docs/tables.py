r"""Every results table in the docs, made from the per-seed results that are
committed under docs/results/.

  python docs/tables.py             # rewrite every table in README.md, docs/*.md
  python docs/tables.py --check     # exit 1 naming each table that differs
  python docs/tables.py collect NAME WORKDIR --command='bash docs/results/NAME.sh'
      # a finished `python -m au_jax.ablate` workdir (its ablation_seeds.json)
      # -> docs/results/NAME.json
  python docs/tables.py collect NAME --run=ROW:SEED=RESULTS_JSON [...] \
      --command='...'               # single runs (au_jax.main) -> the same

A table in a Markdown file sits between two markers,

  <!-- table: NAME KIND -->
  ...                               (written by this script; never by hand)
  <!-- end table -->

NAME is a docs/results/NAME.json file and an entry of TABLES below (row
labels, what each row's step budget is, which row pairs are compared and the
paper's difference for each); KIND is one of

  summary    per row: F1 at 0.5, F1 with thresholds tuned on validation, AUC
             (each mean over seeds +- half-range, each seed in brackets) and
             the all-present F1 (the floor);
  verdicts   per compared pair: the difference under both decision rules and
             whether it exceeds the seed spread, and the verdict;
  per_au     per-AU F1 at 0.5 (mean over seeds); per_au_tuned: tuned F1;
  run        one run, per AU: tuned F1, F1 at 0.5, accuracy, AUC, AP, floor.

The rule (README, "Methods"): a difference is reproduced only
where the two rows' seed ranges do not overlap under both rules, F1 at 0.5
and F1 with tuned thresholds, in the paper's direction; otherwise it is "not
detectable at this budget" (or "opposite to the paper", beyond the spread
under both rules).
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
from typing import Any, Mapping, Sequence

import ml_collections

from au_jax import ablate
from au_jax import tables as au_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'docs', 'results')
MARKER = re.compile(
    r'(<!-- table: (?P<name>[\w.-]+) (?P<kind>\w+) -->\n)(?P<body>.*?)'
    r'(<!-- end table -->)', re.S)

# name -> {'rows': {key: (label, steps text, total steps)}, 'pairs': [(a, b,
# the paper's difference, or 'higher' / 'lower', or None; what the step
# is)], 'extra': [(metric, column)]}. A row's total counts every training
# step behind it (earlier stages, the run it starts from, pretraining);
# a pair whose totals differ is never called reproduced.
TABLES: dict[str, dict[str, Any]] = {
    'drml_main': {'rows': {'drml': ('DRML, `configs/drml.py`', '360', 360)},
                  'pairs': []},
    'lpnet_table3': {
        'rows': {
            'ResNet-34': ('ResNet-34 (no SL, no DA, no pretraining)', '150', 150),
            'ResNet-34+SL': ('ResNet-34 + SL', '150', 150),
            'ResNet-34+SL+DA': ('ResNet-34 + SL + DA (mirror)', '150', 150),
            'Stem-Net': ('Stem-Net* (+ identity pretraining)',
                         '100 (identities) + 150', 250),
            'Stem-Net+L-Net': ('Stem-Net + L-Net',
                               '100 + 150 + 150 (L-Net stage)', 400),
            'Stem-Net+P-Net_without_Lr': (
                'Stem-Net + P-Net without L_r', '100 + 150 + 150 (P-Net stage)',
                400),
            'Stem-Net+P-Net': ('Stem-Net + P-Net (with L_r)',
                               '100 + 150 + 150 (P-Net stage)', 400),
            'Stem-Net_300steps': ('Stem-Net*, 300 stem steps (budget control)',
                                  '100 + 300', 400),
            'LP-Net': ('LP-Net (+ L-Net + P-Net, L_r)',
                       '100 + 150 + 150 + 150', 550),
        },
        'pairs': [
            ('ResNet-34', 'ResNet-34+SL', 1.5, 'SL'),
            ('ResNet-34+SL', 'ResNet-34+SL+DA', 1.3, 'DA'),
            ('ResNet-34+SL+DA', 'Stem-Net', 1.5, 'identity pretraining'),
            ('Stem-Net', 'Stem-Net+L-Net', 2.2, 'L-Net (+150 steps)'),
            ('Stem-Net', 'Stem-Net+P-Net_without_Lr', 0.7,
             'P-Net without L_r (+150 steps)'),
            ('Stem-Net+P-Net_without_Lr', 'Stem-Net+P-Net', 1.1, 'L_r'),
            ('Stem-Net+L-Net', 'LP-Net', 0.8, 'P-Net on L-Net (+150 steps)'),
            ('Stem-Net_300steps', 'Stem-Net+L-Net', 2.2,
             'L-Net, equal steps'),
            ('Stem-Net_300steps', 'Stem-Net+P-Net_without_Lr', 0.7,
             'P-Net without L_r, equal steps'),
            ('Stem-Net_300steps', 'Stem-Net+P-Net', 1.8,
             'P-Net with L_r, equal steps'),
        ]},
    'caud_trunks': {
        'rows': {
            'emonet_frozen': ('frozen EmoNet trunk + heads',
                              '300 (heads), after EmoNet\'s 600 on emotion '
                              'labels of the same training frames', 900),
            'random_frozen': ('frozen random trunk + heads', '300 (heads)', 300),
            'scratch': ('every layer from scratch', '300', 300),
        },
        'pairs': [
            ('random_frozen', 'emonet_frozen', 'higher',
             'EmoNet trunk vs random trunk'),
            ('scratch', 'emonet_frozen', 'higher',
             'EmoNet trunk vs every layer from scratch (EmoNet row: +600 '
             'emotion steps)'),
        ]},
    'aunets_fusion': {
        'rows': {
            'rgb': ('RGB', '500', 500),
            'flow': ('flow Alone', '500', 500),
            'channels': ('Channels (RGB + flow, 6 channels)', '500', 500),
            'horizontal': ('Horizontal (RGB and flow side by side)', '500', 500),
            'rgb_1000steps': ('RGB, 1,000 steps', '1,000', 1000),
            'pi_conv': ('pi/conv (from the RGB row\'s run)',
                        '500 more on the RGB row\'s 500: 1,000', 1000),
            'pi_fc6': ('pi/fc6 (from the RGB row\'s run)',
                       '500 more on the RGB row\'s 500: 1,000', 1000),
            'pi_fc7': ('pi/fc7 (from the RGB row\'s run)',
                       '500 more on the RGB row\'s 500: 1,000', 1000),
        },
        # Paper table 2 (BP4D mean F1): RGB 61.6, Alone 50.4, Channels
        # 61.7, Horizontal 62.6, pi/conv 61.9, pi/fc6 62.4, pi/fc7 62.5.
        'pairs': [
            ('rgb', 'flow', -11.2, 'flow alone'),
            ('rgb', 'channels', 0.1, 'Channels fusion'),
            ('rgb', 'horizontal', 1.0, 'Horizontal fusion'),
            ('rgb_1000steps', 'pi_conv', 0.3, 'pi/conv, equal steps'),
            ('rgb_1000steps', 'pi_fc6', 0.8, 'pi/fc6, equal steps'),
            ('rgb_1000steps', 'pi_fc7', 0.9, 'pi/fc7, equal steps'),
        ],
        'extra': [('f1_smoothed', 'F1 tuned, median window 7')]},
    'idennet_rows': {
        'rows': {
            'within_no_identity': ('LightCNN (no identity branch)', '300', 300),
            'within': ('IdenNet (fc6 - fc5, triplet loss on identity pairs)',
                       '300', 300),
            'within_subject_pairs': (
                'IdenNet, AU frames also in same-subject pairs', '300', 300),
        },
        'pairs': [
            ('within_no_identity', 'within', 'higher', 'identity subtraction'),
            ('within_no_identity', 'within_subject_pairs', 'higher',
             'identity subtraction, the paper\'s batches'),
            ('within', 'within_subject_pairs', None,
             'AU subjects in the triplet term'),
        ]},
}

SEPARATED = {True: 'beyond', False: 'within', None: 'one seed'}


# ----------------------------------------------------------------------------
# Numbers

def seed_values(row: Mapping[str, Any], metric: str) -> list[float]:
  """Each seed's mean over AUs of `metric` ('f1', 'f1_at_05', 'auc', ...),
  in seed order; a seed without it is an error naming the metric."""
  values = []
  for seed in sorted(row, key=int):
    mean = row[seed]['mean']
    if metric not in mean:
      raise KeyError(f'tables: seed {seed} has no mean {metric!r} '
                     f'(has {sorted(mean)}).')
    values.append(float(mean[metric]))
  return values


def spread(values: Sequence[float]) -> tuple[float, float, float]:
  """(mean, min, max) of the seeds' values."""
  return sum(values) / len(values), min(values), max(values)


def separated(a: Sequence[float], b: Sequence[float]) -> bool | None:
  """Whether the two rows' seed ranges do not overlap; None with fewer than
  two seeds in either (no spread to judge by)."""
  if min(len(a), len(b)) < 2:
    return None
  return max(a) < min(b) or max(b) < min(a)


def verdict(diffs: Mapping[str, float], apart: Mapping[str, bool | None],
            paper: float | str | None) -> str:
  """The verdict on one step from its differences (b - a) and separation
  under each decision rule (keys 'f1_at_05', 'f1')."""
  if any(v is None for v in apart.values()):
    return 'one seed: no spread to judge by'
  if not all(apart.values()):
    return 'not detectable at this budget'
  signs = {d > 0 for d in diffs.values()}
  if len(signs) > 1:
    return 'the two rules disagree in sign: not detectable'
  up = signs.pop()
  if paper is None:
    return ('higher' if up else 'lower') + ', beyond the spread under both rules'
  if up == _paper_up(paper):
    return 'reproduced (direction; beyond the spread under both rules)'
  return 'opposite to the paper, beyond the spread under both rules'


def _paper_up(paper: float | str) -> bool:
  """The paper's direction: a difference, or 'higher' / 'lower' where the
  paper states the direction without a number on the same protocol."""
  if isinstance(paper, str):
    if paper not in ('higher', 'lower'):
      raise ValueError(f'tables: paper direction {paper!r} is not a number, '
                       "'higher' or 'lower'.")
    return paper == 'higher'
  return paper > 0


def _paper_text(paper: float | str | None) -> str:
  if paper is None:
    return ''
  return paper if isinstance(paper, str) else f'{paper:+.1f}'


def _cell(values: Sequence[float]) -> str:
  mean, low, high = spread(values)
  seeds = ', '.join(f'{v:.1f}' for v in values)
  if len(values) == 1:
    return f'{mean:.1f} (one seed)'
  return f'{mean:.1f} ± {(high - low) / 2:.1f} ({seeds})'


def _floor(row: Mapping[str, Any]) -> str:
  floors = [row[s]['mean'].get('baseline_f1') for s in row]
  if any(f is None for f in floors):
    return 'not recorded'
  return f'{sum(floors) / len(floors):.1f}'


def _tuned(row: Mapping[str, Any]) -> bool:
  return all(seed.get('tune_thresholds', True) for seed in row.values())


# ----------------------------------------------------------------------------
# Markdown

def _rows(name: str, data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
  """(key, label, steps) of the table's rows present in its results, in
  TABLES order; a results row TABLES does not know is an error."""
  spec = TABLES[name]['rows']
  unknown = [r for r in data['rows'] if r not in spec]
  if unknown:
    raise KeyError(f'tables: docs/results/{name}.json has rows {unknown} that '
                   f'TABLES[{name!r}] does not label.')
  return [(k, *spec[k][:2]) for k in spec if k in data['rows']]


def summary(name: str, data: Mapping[str, Any]) -> str:
  extra = TABLES[name].get('extra', [])
  lines = ['| row | training steps | F1 @ 0.5 | F1, thresholds tuned on '
           'validation | ' + ''.join(f'{label} | ' for _, label in extra)
           + 'AUC | all-present F1 |',
           '|---|---|' + '---:|' * (4 + len(extra))]
  for key, label, steps in _rows(name, data):
    row = data['rows'][key]
    tuned = (_cell(seed_values(row, 'f1')) if _tuned(row)
             else 'not tuned (= F1 @ 0.5)')
    cells = [_cell(seed_values(row, 'f1_at_05')), tuned]
    for metric in [m for m, _ in extra] + ['auc']:
      cells.append(_cell(seed_values(row, metric))
                   if all(metric in s['mean'] for s in row.values())
                   else 'not recorded')
    lines.append(f'| {label} | {steps} | ' + ' | '.join(cells)
                 + f' | {_floor(row)} |')
  return '\n'.join(lines) + '\n'


def verdicts(name: str, data: Mapping[str, Any]) -> str:
  labels = {k: label for k, label, _ in _rows(name, data)}
  lines = ['| step | paper | F1 @ 0.5 | F1 tuned | AUC | verdict |',
           '|---|---:|---:|---:|---:|---|']
  for a, b, paper, what in TABLES[name]['pairs']:
    if a not in data['rows'] or b not in data['rows']:
      continue
    diffs, apart, cells = {}, {}, []
    for metric in ('f1_at_05', 'f1', 'auc'):
      va = seed_values(data['rows'][a], metric)
      vb = seed_values(data['rows'][b], metric)
      diffs[metric] = spread(vb)[0] - spread(va)[0]
      apart[metric] = separated(va, vb)
      cells.append(f'{diffs[metric]:+.1f}, {SEPARATED[apart[metric]]}')
    rules = {m: apart[m] for m in ('f1_at_05', 'f1')}
    if not _tuned(data['rows'][a]) or not _tuned(data['rows'][b]):
      cells[1] = 'not tuned'
    text = verdict({m: diffs[m] for m in rules}, rules, paper)
    more = TABLES[name]['rows'][b][2] - TABLES[name]['rows'][a][2]
    if more and not text.startswith('not detectable'):
      text = (f'beyond the spread under both rules, but confounded: '
              f'{more:+,} training steps')
    lines.append(f'| {labels[a]} -> {labels[b]}: {what} | '
                 f'{_paper_text(paper)} | '
                 + ' | '.join(cells) + f' | {text} |')
  return '\n'.join(lines) + '\n'


def per_au(name: str, data: Mapping[str, Any], metric: str = 'f1_at_05') -> str:
  rows = _rows(name, data)
  aus = data['rows'][rows[0][0]][min(data['rows'][rows[0][0]], key=int)]['aus']
  head = ['row'] + [f'AU{au}' for au in aus] + ['mean (± half-range)']
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|']
  for key, label, _ in rows:
    row = data['rows'][key]
    cells = [label]
    for au in aus:
      values = [float(row[s]['per_au'][str(au)][metric]) for s in row]
      cells.append(f'{sum(values) / len(values):.1f}')
    cells.append(_cell(seed_values(row, metric)))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def run_table(name: str, data: Mapping[str, Any]) -> str:
  ((key, label, _),) = _rows(name, data)[:1]
  ((seed, run),) = list(data['rows'][key].items())[:1]
  columns = [('f1', 'F1 (tuned)'), ('f1_at_05', 'F1 @ 0.5'),
             ('accuracy', 'Acc'), ('auc', 'AUC'),
             ('average_precision', 'AP'), ('baseline_f1', 'all-present F1')]
  lines = ['| AU | ' + ' | '.join(c for _, c in columns) + ' |',
           '|---|' + '---:|' * len(columns)]
  for au in run['aus']:
    entry = run['per_au'][str(au)]
    lines.append(f'| {au} | ' + ' | '.join(
        f'{entry[m]:.1f}' if m in entry else '-' for m, _ in columns) + ' |')
  lines.append('| **mean** | ' + ' | '.join(
      f'**{run["mean"][m]:.1f}**' if m in run['mean'] else '-'
      for m, _ in columns) + ' |')
  return '\n'.join(lines) + '\n'


def pnet_diagnostics(name: str, data: Mapping[str, Any]) -> str:
  """LP-Net's P-Net per run (attached 'pnet/<row>/<seed>': the output of
  docs/lpnet_pnet_diagnostics.py) and the landmark probe ('probe')."""
  labels = {k: label for k, label, _ in _rows(name, data)}
  lines = ['| row | seed | kept step | std of m_j over frames | std of the '
           'head\'s logits | mean abs(f_s) | mean abs(cos(f_au, f_s)) | L_r |',
           '|---|---:|---:|---:|---:|---:|---:|---:|']
  attached = data.get('attached', {})
  for key in sorted(k for k in attached if k.startswith('pnet/')):
    _, row, seed = key.split('/')
    p = attached[key]['pnet']
    lines.append(
        f'| {labels[row]} | {seed} | {p["step"]} | {p["terms_std_mean"]:.3f} '
        f'| {p["head_logits_std_mean"]:.2f} | {p["shape_feature_norm"]:.2f} '
        f'| {p["abs_cos"]:.3f} | {p["orthogonality_loss"]:.2f} |')
  probe = attached.get('probe', {}).get('probe')
  if probe:
    lines += ['', f'Landmark probe (class-balanced logistic regression on '
              f'P-Net\'s input, {probe["train_frames"]:,} training frames, '
              f'{probe["test_frames"]:,} test frames): mean F1 '
              f'{probe["mean_f1"]:.1f} against {probe["mean_all_present_f1"]:.1f}'
              ' for predicting every AU present.']
  return '\n'.join(lines) + '\n'


KINDS = {'summary': summary, 'verdicts': verdicts, 'per_au': per_au,
         'per_au_tuned': lambda n, d: per_au(n, d, 'f1'), 'run': run_table,
         'pnet': pnet_diagnostics}


def load(name: str) -> dict[str, Any]:
  path = os.path.join(RESULTS, name + '.json')
  if name not in TABLES:
    raise KeyError(f'tables: no TABLES entry {name!r} (known: '
                   f'{sorted(TABLES)}).')
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'tables: a table marker names {name!r}, but there is no '
        f'docs/results/{name}.json; make it with `python docs/tables.py '
        f'collect {name} WORKDIR --command=...` (docs/results/{name}.sh '
        'runs it, where there is one).')
  with open(path) as f:
    return json.load(f)


def render(text: str, where: str) -> str:
  """`text` with every marked table rewritten from its results."""
  def table(match: re.Match) -> str:
    name, kind = match['name'], match['kind']
    if kind not in KINDS:
      raise ValueError(f'tables: {where}: unknown kind {kind!r} for {name} '
                       f'(known: {sorted(KINDS)}).')
    data = load(name)
    source = (f'<sub>From `docs/results/{name}.json` (recorded '
              f'{data.get("recorded", "?")}, commit {data.get("commit", "?")}'
              f'; regenerate: `python docs/tables.py`).</sub>\n')
    return (match.group(1) + '\n' + KINDS[kind](name, data) + '\n' + source
            + match.group(5))
  return MARKER.sub(table, text)


def markdown_files() -> list[str]:
  return [os.path.join(ROOT, 'README.md')] + sorted(
      glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def rewrite(check: bool) -> int:
  """Rewrites (or with check=True only compares) every file's tables;
  returns the number of files that differ."""
  differ = 0
  for path in markdown_files():
    with open(path) as f:
      text = f.read()
    new = render(text, os.path.relpath(path, ROOT))
    if new != text:
      differ += 1
      if check:
        print(f'tables: {os.path.relpath(path, ROOT)} differs from what its '
              'results give (run: python docs/tables.py).')
      else:
        au_tables.write_atomic(path, lambda f, text=new: f.write(text))
        print(f'tables: rewrote {os.path.relpath(path, ROOT)}')
  return differ


# ----------------------------------------------------------------------------
# Collecting finished runs

def _commit() -> str:
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def _single_run(spec: str) -> tuple[str, str, dict[str, Any]]:
  """ROW:SEED=RESULTS_JSON -> (row, seed, digest with the run's facts)."""
  match = re.fullmatch(r'([^:=]+):(\d+)=(.+)', spec)
  if not match:
    raise ValueError(f'tables: --run {spec!r} is not ROW:SEED=RESULTS_JSON.')
  row, seed, path = match.groups()
  with open(path) as f:
    entry = ablate.digest_results(json.load(f))
  configs = sorted(glob.glob(os.path.join(os.path.dirname(path), '**',
                                          'config.json'), recursive=True))
  if not configs:
    raise FileNotFoundError(f'tables: no config.json under '
                            f'{os.path.dirname(path)} (the run of {path}).')
  with open(configs[0]) as f:
    config = ml_collections.ConfigDict(json.load(f))
  entry.update(ablate.run_facts(config))
  return row, seed, entry


def collect(name: str, workdir: str | None, runs_: Sequence[str],
            command: str, commit: str | None = None,
            attach: Sequence[str] = ()) -> str:
  if workdir:
    with open(os.path.join(workdir, 'ablation_seeds.json')) as f:
      rows = json.load(f)['rows']
  else:
    rows = {}
  for spec in runs_:
    row, seed, entry = _single_run(spec)
    rows.setdefault(row, {})[seed] = entry
  attached = {}
  for spec in attach:
    key, _, path = spec.partition('=')
    if not key or not path:
      raise ValueError(f'tables: --attach {spec!r} is not KEY=JSON_FILE.')
    with open(path) as f:
      attached[key] = json.load(f)
    if len(json.dumps(attached[key])) > 50_000:
      raise ValueError(f'tables: {path} is over 50 kB; attach a digest.')
  data = {'table': name, 'command': command,
          'recorded': datetime.date.today().isoformat(),
          'commit': commit or _commit(),
          'machine': f'{platform.machine()}, {os.cpu_count()} CPU cores, '
                     'XLA:CPU float32',
          'rows': rows}
  if attached:
    data['attached'] = attached
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, name + '.json')
  text = json.dumps(data, indent=1)
  au_tables.write_atomic(path, lambda f: f.write(text + '\n'))
  return path


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  sub = parser.add_subparsers(dest='action')
  parser.add_argument('--check', action='store_true',
                      help='only compare; exit 1 when a table differs')
  grab = sub.add_parser('collect', help='finished runs -> docs/results/')
  grab.add_argument('name')
  grab.add_argument('workdir', nargs='?')
  grab.add_argument('--run', action='append', default=[],
                    help='ROW:SEED=RESULTS_JSON (repeatable)')
  grab.add_argument('--command', required=True,
                    help='the command that made the runs (kept in the file)')
  grab.add_argument('--attach', action='append', default=[],
                    help='KEY=JSON_FILE: a small result kept beside the rows '
                    '(a diagnostic, a pretraining run); repeatable')
  grab.add_argument('--commit', help='the commit the runs were made at '
                    '(default: HEAD)')
  args = parser.parse_args(argv)
  if args.action == 'collect':
    print(collect(args.name, args.workdir, args.run, args.command,
                  args.commit, args.attach))
    return 0
  return 1 if rewrite(args.check) and args.check else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
