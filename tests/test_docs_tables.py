"""docs/tables.py: the docs' results tables are what the committed per-seed
results give, and the verdict rule on hand-made numbers."""

import glob
import importlib.util
import json
import os

import pytest

from au_jax import ablate
from configs import lpnet as lpnet_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_tables():
  spec = importlib.util.spec_from_file_location(
      'docs_tables', os.path.join(ROOT, 'docs', 'tables.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


tables = _load_tables()


def _seed(f1: float, f1_at_05: float, auc: float, floor: float = 45.0):
  return {'aus': [1], 'tune_thresholds': True,
          'mean': {'f1': f1, 'f1_at_05': f1_at_05, 'auc': auc,
                   'baseline_f1': floor},
          'per_au': {'1': {'f1': f1, 'f1_at_05': f1_at_05}}}


def test_docs_tables_match_committed_results():
  # Every marked table in README.md and docs/*.md is exactly what
  # `python docs/tables.py` writes from docs/results/: nobody edits one by
  # hand, and a results file that changes shows in the docs.
  assert tables.rewrite(check=True) == 0


def test_every_marker_has_results_and_every_result_a_marker():
  used = set()
  for path in tables.markdown_files():
    with open(path) as f:
      for match in tables.MARKER.finditer(f.read()):
        used.add(match['name'])
        assert match['kind'] in tables.KINDS, (path, match['kind'])
  files = {os.path.basename(p)[:-5]
           for p in glob.glob(os.path.join(tables.RESULTS, '*.json'))}
  assert used <= files, f'markers without results: {used - files}'
  assert files <= used, f'results no table shows: {files - used}'
  assert used <= set(tables.TABLES)
  for name in files:
    data = tables.load(name)
    assert data['command'] and data['commit'] and data['recorded'], name
    for key, row in data['rows'].items():
      total = tables.TABLES[name]['rows'][key][2]
      for seed, entry in row.items():
        assert entry['seed'] == int(seed)
        # A row's stated total covers at least the steps its runs record
        # (more where it starts from another row's run or a pretraining).
        assert total >= sum(entry['stage_steps'].values()), (name, key)


def test_separated_and_verdict_by_hand():
  assert tables.separated([50.0, 52.0], [53.0, 55.0]) is True
  assert tables.separated([50.0, 54.0], [53.0, 55.0]) is False
  assert tables.separated([50.0], [53.0, 55.0]) is None
  both = {'f1_at_05': True, 'f1': True}
  assert tables.verdict({'f1_at_05': 2.0, 'f1': 1.0}, both, 1.5).startswith(
      'reproduced')
  assert tables.verdict({'f1_at_05': -2.0, 'f1': -1.0}, both, 1.5).startswith(
      'opposite')
  assert tables.verdict({'f1_at_05': 2.0, 'f1': -1.0}, both, 1.5).startswith(
      'the two rules disagree')
  # Beyond the spread at 0.5 only: does not count.
  assert tables.verdict({'f1_at_05': 8.1, 'f1': -0.4},
                        {'f1_at_05': True, 'f1': False},
                        1.5) == 'not detectable at this budget'


def test_summary_and_verdict_rows_by_hand(monkeypatch):
  monkeypatch.setitem(tables.TABLES, 'hand', {
      'rows': {'a': ('row A', '10', 10), 'b': ('row B', '10', 10)},
      'pairs': [('a', 'b', 1.0, 'B over A')]})
  data = {'rows': {
      'a': {'0': _seed(50.0, 40.0, 70.0), '1': _seed(52.0, 42.0, 72.0)},
      'b': {'0': _seed(55.0, 41.0, 75.0), '1': _seed(57.0, 45.0, 77.0)}}}
  text = tables.summary('hand', data)
  assert ('| row A | 10 | 41.0 ± 1.0 (40.0, 42.0) | 51.0 ± 1.0 (50.0, 52.0) '
          '| 71.0 ± 1.0 (70.0, 72.0) | 45.0 |') in text
  text = tables.verdicts('hand', data)
  # F1 tuned 56 vs 51 (ranges 55-57, 50-52 apart); at 0.5 43 vs 41 with
  # ranges 41-45 and 40-42 overlapping: not detectable.
  assert ('| row A -> row B: B over A | +1.0 | +2.0, within | +5.0, beyond '
          '| +5.0, beyond | not detectable at this budget |') in text
  # Beyond the spread under both rules, but with more steps: confounded.
  data['rows']['b'] = {'0': _seed(55.0, 45.0, 75.0),
                       '1': _seed(57.0, 47.0, 77.0)}
  monkeypatch.setitem(tables.TABLES['hand']['rows'], 'b', ('row B', '20', 20))
  assert '| +5.0, beyond | +5.0, beyond | +5.0, beyond | beyond the spread ' \
      'under both rules, but confounded: +10 training steps |' in (
          tables.verdicts('hand', data))
  per_au = tables.per_au('hand', data)
  assert '| row B | 46.0 | 46.0 ± 1.0 (45.0, 47.0) |' in per_au


def test_unknown_row_is_an_error(monkeypatch):
  monkeypatch.setitem(tables.TABLES, 'hand', {'rows': {}, 'pairs': []})
  with pytest.raises(KeyError, match='does not label'):
    tables.summary('hand', {'rows': {'x': {'0': _seed(1, 1, 1)}}})


def test_digest_keeps_numbers_and_drops_predictions():
  results = {'aus': [1], 'num_frames': 3,
             'mean': {'f1': 50.0, 'note': 'x'},
             'per_au': {'1': {'f1': 50.0, 'num_labelled': 3}},
             'folds': {'1': {'checkpoint_step': 7, 'predictions': [[0.1]] * 3,
                             'test_subjects': ['S1']}}}
  out = ablate.digest_results(results)
  assert out['mean'] == {'f1': 50.0}
  assert out['per_au'] == {'1': {'f1': 50.0, 'num_labelled': 3.0}}
  assert out['folds'] == {'1': {'checkpoint_step': 7, 'test_subjects': ['S1']}}
  json.dumps(out)


def test_run_facts_of_a_staged_config():
  config = lpnet_config.get_config('ablation')
  facts = ablate.run_facts(config)
  assert list(facts['stage_steps']) == list(config.stage_order)
  assert facts['stage_steps']['pretrain'] == 100
  assert facts['stage_steps']['stem'] == 150
  assert facts['tune_thresholds'] is True
