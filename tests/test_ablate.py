"""au_jax.ablate: table aggregation, overrides, shared runs (no training)."""

import json
import os

import pytest

from au_jax import ablate
from au_jax import runs
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
  """Pretraining is one run for all pretrained rows; Stem-Net is shared by
  the L-Net, P-Net and LP-Net rows; the rows without pretraining share no
  run with it; other seeds share nothing beyond what they must."""
  rows = ablate.load_rows('configs/lpnet.py:test')
  base = lpnet_config.get_config('test')
  names = ('ResNet-34', 'ResNet-34+SL', 'ResNet-34+SL+DA', 'Stem-Net',
           'Stem-Net+L-Net', 'Stem-Net+P-Net', 'Stem-Net+P-Net_without_Lr',
           'LP-Net')
  chains = {name: ablate.run_chain(
      ablate.row_config(base, name, rows[name], 0), str(tmp_path / name))
            for name in names}
  digests = {name: [d for d, _, _ in chain] for name, chain in chains.items()}
  stages = {name: [s for _, _, s in chain] for name, chain in chains.items()}
  assert stages['LP-Net'] == ['pretrain', 'stem', 'lnet', 'pnet']
  assert stages['Stem-Net+P-Net'] == ['pretrain', 'stem', 'pnet']
  assert stages['ResNet-34'] == stages['ResNet-34+SL+DA'] == ['stem']
  pretrained = names[3:]
  assert len({digests[n][0] for n in pretrained}) == 1  # one pretraining
  # Without pretraining, without mirror, without SL: three other runs.
  assert len({digests[n][0] for n in names[:3]} | {digests['Stem-Net'][1]}
             ) == 4
  assert len({digests[n][1] for n in pretrained}) == 1  # one Stem-Net
  assert digests['Stem-Net+L-Net'][2] == digests['LP-Net'][2]
  # The two P-Net rows differ by L_r only, and neither is LP-Net's P-Net.
  assert len({digests[n][-1] for n in (
      'Stem-Net+P-Net', 'Stem-Net+P-Net_without_Lr', 'LP-Net')}) == 3
  # The budget control differs from Stem-Net in its stem's steps only (not
  # in the fingerprint, which leaves num_train_steps out): it shares the
  # pretraining but never the stem run.
  control = [d for d, _, _ in ablate.run_chain(ablate.row_config(
      base, 'Stem-Net_300steps', rows['Stem-Net_300steps'], 0),
                                               str(tmp_path / 'c'))]
  assert control[0] == digests['Stem-Net'][0]
  assert control[1] != digests['Stem-Net'][1]
  other_seed = ablate.run_chain(
      ablate.row_config(base, 'LP-Net', rows['LP-Net'], 1),
      str(tmp_path / 'x'))
  assert not set(digests['LP-Net']) & {d for d, _, _ in other_seed}

  # Links and the stages left to train for the LP-Net row.
  trained = {}
  for name in ('Stem-Net', 'Stem-Net+L-Net'):
    for digest, directory, _ in chains[name]:
      os.makedirs(directory, exist_ok=True)
      trained.setdefault(digest, directory)
  shared = ablate.link_shared_runs(chains['LP-Net'], trained)
  assert shared == set(digests['LP-Net'][:3])
  stem_link = chains['LP-Net'][1][1]
  assert os.path.islink(stem_link)
  assert os.path.realpath(stem_link) == os.path.realpath(
      chains['Stem-Net'][1][1])
  config = ablate.row_config(base, 'LP-Net', rows['LP-Net'], 0)
  assert ablate.unshared_config(
      config, chains['LP-Net'], shared).stage_order == ('pnet',)
  assert ablate.unshared_config(
      config, chains['LP-Net'], set(digests['LP-Net'])) is None


def test_lpnet_rows_are_table_3s():
  """Each table 3 row sets what the paper's row says: depth, SL, mirror
  (DA), pretraining (P), the heads and L_r."""
  base = lpnet_config.get_config('ablation')
  def run(name, stage):
    config = ablate.row_config(base, name, lpnet_config.ABLATION[name], 0)
    return config, runs.run_config(config, runs.RunKey(1, None, None, stage))
  for name, depth in (('ResNet-18', 18), ('ResNet-34', 34),
                      ('ResNet-50', 50)):
    _, stem = run(name, 'stem')
    assert (stem.model.depth, stem.selective_learning, stem.flip,
            stem.init_from) == (depth, False, False, None), name
  _, stem = run('ResNet-34+SL', 'stem')
  assert (stem.selective_learning, stem.flip, stem.init_from) == (
      True, False, None)
  _, stem = run('ResNet-34+SL+DA', 'stem')
  assert (stem.selective_learning, stem.flip, stem.init_from) == (
      True, True, None)
  _, stem = run('Stem-Net', 'stem')
  assert stem.init_from.stage == 'pretrain' and stem.flip
  for name, lnet, weight in (('Stem-Net+P-Net', False, 1.0),
                             ('Stem-Net+P-Net_without_Lr', False, 0.0),
                             ('LP-Net', True, 1.0)):
    _, pnet = run(name, 'pnet')
    assert (pnet.model.use_lnet, pnet.model.use_pnet,
            pnet.orthogonality_weight) == (lnet, True, weight), name
    assert pnet.init_from.stage == ('lnet' if lnet else 'stem'), name


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
    assert [s for _, _, s in chain] == list(config.stage_order), name
    assert (chain[0][2] == 'pretrain') == (
        config.stages.stem.init_from is not None), name


def test_no_train_mode_refuses_missing_runs(tmp_path):
  base = lpnet_config.get_config('test')
  rows = ablate.load_rows('configs/lpnet.py')
  with pytest.raises(FileNotFoundError,
                     match='Stem-Net seed 0 has no finished'):
    ablate.run_ablation(base, rows, ['Stem-Net'], [0], str(tmp_path),
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
  ablate.plot_main([out] + paths + ['--title=x'])
  assert os.path.getsize(out) > 1000
