"""au_jax.ablate: table aggregation, overrides, shared runs (no training)."""

import json
import os

import pytest

from au_jax import ablate
from configs import lpnet as lpnet_config

AUS = (1, 2)


def _results(f1_au1: float, f1_au2: float) -> dict:
  return {'per_au': {'1': {'f1': f1_au1}, '2': {'f1': f1_au2}},
          'mean': {'f1': (f1_au1 + f1_au2) / 2}}


def _hand_table() -> dict:
  return ablate.aggregate({
      'a': {0: _results(40.0, 60.0), 1: _results(44.0, 60.0)},  # 50, 52
      'b': {0: _results(50.0, 60.0), 1: _results(54.0, 62.0)},  # 55, 58
      'c': {0: _results(50.0, 60.0)},  # 55: inside b's range
  }, AUS)


def test_aggregate_values():
  table = _hand_table()
  a, b, c = (table['rows'][r] for r in 'abc')
  assert a['per_au_f1'] == {'1': 42.0, '2': 60.0}
  assert a['seed_mean_f1'] == [50.0, 52.0]
  assert a['mean_f1'] == 51.0 and a['half_range'] == 1.0
  assert a['std'] == pytest.approx(2 ** 0.5)  # ddof 1 of (50, 52)
  assert b['mean_f1'] == 56.5 and b['half_range'] == 1.5
  assert c['std'] == 0.0 and c['seeds'] == [0]
  first, second = table['comparisons']
  assert (first['a'], first['b']) == ('a', 'b')
  assert first['difference'] == 5.5 and first['separated']  # 52 < 55
  assert second['difference'] == -1.5 and second['separated'] is None
  overlapping = ablate.aggregate({
      'a': {0: _results(50.0, 50.0), 1: _results(54.0, 54.0)},
      'b': {0: _results(52.0, 52.0), 1: _results(58.0, 58.0)}}, AUS)
  assert not overlapping['comparisons'][0]['separated']  # 52 < 54


def test_markdown_rows_and_note():
  text = ablate.markdown(_hand_table())
  lines = text.splitlines()
  assert lines[0].startswith('| row | AU1 | AU2 | mean F1')
  assert lines[2] == ('| a | 42.0 | 60.0 | 51.0 ± 1.0 | 1.4 | 50.0 | 52.0 |')
  assert lines[4] == '| c | 50.0 | 60.0 | 55.0 ± 0.0 | 0.0 | 55.0 | - |'
  assert '- a -> b: +5.5 mean F1, exceeds the seed spread.' in text
  assert '- b -> c: -1.5 mean F1, one seed only, no spread' in text


def test_write_table(tmp_path):
  json_path, md_path = ablate.write_table(_hand_table(), str(tmp_path))
  with open(json_path) as f:
    assert json.load(f)['rows']['b']['mean_f1'] == 56.5
  with open(md_path) as f:
    assert f.read() == ablate.markdown(_hand_table())
  assert sorted(os.listdir(tmp_path)) == ['ablation.json', 'ablation.md',
                                         'ablation.png']  # No temp left.


def test_metric_f1_at_05(tmp_path):
  def results(f1, at_05):
    return {'per_au': {'1': {'f1': f1, 'f1_at_05': at_05}},
            'mean': {'f1': f1, 'f1_at_05': at_05}}
  table = ablate.aggregate({'a': {0: results(50.0, 30.0),
                                  1: results(52.0, 36.0)}}, (1,),
                           metric='f1_at_05')
  assert table['rows']['a']['mean_f1'] == 33.0
  assert table['rows']['a']['half_range'] == 3.0
  assert 'mean F1@0.5 (± half-range)' in ablate.markdown(table)
  json_path, _ = ablate.write_table(table, str(tmp_path))
  assert os.path.basename(json_path) == 'ablation_f1_at_05.json'
  with pytest.raises(KeyError, match="no 'auc' for AU 1"):
    ablate.aggregate({'a': {0: results(1.0, 1.0)}}, (1,), metric='auc')


def test_missing_au_is_named():
  with pytest.raises(KeyError, match='AU 4'):
    ablate.aggregate({'a': {0: _results(1.0, 2.0)}}, (1, 4))


def test_overrides_dotted_and_unknown():
  base = lpnet_config.get_config('test')
  config = ablate.apply_overrides(
      base, {'stage_order': ('pretrain', 'stem'),
             'stages.stem.selective_learning': False})
  assert config.stage_order == ('pretrain', 'stem')
  assert not config.stages.stem.selective_learning
  assert base.stages.stem.get('selective_learning') is None  # A copy.
  with pytest.raises(KeyError, match='selective_lerning'):
    ablate.apply_overrides(base, {'selective_lerning': False})
  with pytest.raises(KeyError, match='stagez'):
    ablate.apply_overrides(base, {'stagez.stem.x': 1})


def test_lpnet_rows_share_the_right_runs(tmp_path):
  """Pretraining is one run for all rows; Stem-Net + SL is shared by the
  L-Net and LP-Net rows; the no-SL Stem-Net and other seeds share nothing
  beyond what they must."""
  rows = ablate.load_rows('configs/lpnet.py:test')
  base = lpnet_config.get_config('test')
  chains = {name: ablate.run_chain(
      ablate.row_config(base, name, rows[name], 0), str(tmp_path / name))
            for name in ('stem', 'stem_sl', 'lnet', 'pnet')}
  digests = {name: [d for d, _, _ in chain] for name, chain in chains.items()}
  assert [s for _, _, s in chains['pnet']] == [
      'pretrain', 'stem', 'lnet', 'pnet']
  assert len({d[0] for d in digests.values()}) == 1  # one pretraining
  assert digests['stem'][1] != digests['stem_sl'][1]  # SL off
  assert digests['stem_sl'][1] == digests['lnet'][1] == digests['pnet'][1]
  assert digests['lnet'][2] == digests['pnet'][2]
  other_seed = ablate.run_chain(
      ablate.row_config(base, 'pnet', rows['pnet'], 1), str(tmp_path / 'x'))
  assert not set(digests['pnet']) & {d for d, _, _ in other_seed}

  # Links and the stages left to train for the LP-Net row.
  trained = {}
  for name in ('stem_sl', 'lnet'):
    for digest, directory, _ in chains[name]:
      os.makedirs(directory, exist_ok=True)
      trained.setdefault(digest, directory)
  shared = ablate.link_shared_runs(chains['pnet'], trained)
  assert shared == set(digests['pnet'][:3])
  stem_link = chains['pnet'][1][1]
  assert os.path.islink(stem_link)
  assert os.path.realpath(stem_link) == os.path.realpath(
      chains['stem_sl'][1][1])
  config = ablate.row_config(base, 'pnet', rows['pnet'], 0)
  assert ablate.unshared_config(
      config, chains['pnet'], shared).stage_order == ('pnet',)
  assert ablate.unshared_config(
      config, chains['pnet'], set(digests['pnet'])) is None


def test_unknown_row_is_named(tmp_path):
  base = lpnet_config.get_config('test')
  with pytest.raises(ValueError, match="unknown rows \\['nope'\\]"):
    ablate.run_ablation(base, {'a': {}}, ['nope'], [0], str(tmp_path))


def test_every_lpnet_row_builds_its_runs(tmp_path):
  """Each ABLATION row applies to the config and plans its stage runs."""
  base = lpnet_config.get_config('ablation')
  for name, overrides in lpnet_config.ABLATION.items():
    config = ablate.row_config(base, name, overrides, 0)
    chain = ablate.run_chain(config, str(tmp_path / name))
    last = {'stem': 'stem', 'stem_sl': 'stem', 'lnet': 'lnet'}.get(name,
                                                                  'pnet')
    assert [s for _, _, s in chain][0] == 'pretrain', name
    assert chain[-1][2] == last, name


def test_no_train_mode_refuses_missing_runs(tmp_path):
  base = lpnet_config.get_config('test')
  rows = ablate.load_rows('configs/lpnet.py')
  with pytest.raises(FileNotFoundError, match='stem seed 0 has no finished'):
    ablate.run_ablation(base, rows, ['stem'], [0], str(tmp_path),
                        train_missing=False)


def test_floor_merge_and_figure(tmp_path):
  with_floor = dict(_results(50.0, 60.0))
  with_floor['mean'] = dict(with_floor['mean'], baseline_f1=40.0)
  other = dict(_results(54.0, 60.0))
  other['mean'] = dict(other['mean'], baseline_f1=42.0)
  table = ablate.aggregate({'a': {0: with_floor, 1: other},
                            'b': {0: _results(1.0, 1.0)}}, AUS)
  assert table['rows']['a']['floor'] == 41.0  # Mean of the seeds' floors.
  assert 'floor' not in table['rows']['b']  # Its results have none.
  second = ablate.aggregate({'b': {0: _results(9.0, 9.0)},
                             'c': {0: _results(30.0, 40.0)}}, AUS)
  merged = ablate.merge([table, second])
  assert list(merged['rows']) == ['a', 'b', 'c']
  assert merged['rows']['b']['mean_f1'] == 1.0  # The first table's row.
  assert merged['rows']['c']['mean_f1'] == 35.0
  with pytest.raises(ValueError, match='cannot merge'):
    ablate.merge([table, dict(second, metric='f1_at_05')])
  ablate.write_table(table, str(tmp_path))
  with open(tmp_path / 'ablation.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  out = str(tmp_path / 'merged.png')
  paths = []
  for i, t in enumerate((table, second)):
    paths.append(str(tmp_path / f't{i}.json'))
    with open(paths[-1], 'w') as f:
      json.dump(t, f)
  ablate.main([out] + paths + ['--title=x'])
  assert os.path.getsize(out) > 1000
