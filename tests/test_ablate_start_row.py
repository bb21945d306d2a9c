"""au_jax.ablate: a row that starts from another row's run (init_from.row),
as AUNets' pi fusions start from the trained RGB network."""

import os

import ml_collections
import numpy as np
import pytest

from au_jax import ablate
from au_jax import config_checks
from au_jax import init_from
from configs import aunets as aunets_config
from au_jax import runs
from au_jax import checkpointing
import json
import jax


def test_aunets_rows_resolve_and_pass_the_checks():
  base = aunets_config.get_config('ablation')
  for name, overrides in aunets_config.ABLATION.items():
    config = ablate.row_config(base, name, overrides, 3)
    config_checks.check_config(config, 1)  # 'row' is gone, workdir is set.
    if name.startswith('pi_'):
      assert config.model.fusion == name and config.flow
      assert 'row' not in config.init_from
      assert config.init_from.workdir == os.path.join('..', '..', 'rgb',
                                                      'seed_3')
  assert 'row' in aunets_config.ABLATION['pi_fc6']['init_from']  # Unchanged.


def test_source_run_dir_is_the_other_rows_run(tmp_path):
  base = aunets_config.get_config('ablation')
  rows = aunets_config.ABLATION
  rgb = ablate.row_config(base, 'rgb', rows['rgb'], 1)
  pi = ablate.row_config(base, 'pi_conv', rows['pi_conv'], 1)
  key = runs.RunKey(1, au=12)
  pi_run = runs.run_config(pi, key)
  source = init_from.source_run_dir(pi_run, str(tmp_path / 'pi_conv' /
                                                'seed_1'))
  assert source == runs.run_dir(rgb, str(tmp_path / 'rgb' / 'seed_1'), key)
  with pytest.raises(FileNotFoundError, match=r'--workdir=\S*/rgb/seed_1'):
    init_from.load_init_from(pi_run, str(tmp_path / 'pi_conv' / 'seed_1'),
                             {'params': {}, 'batch_stats': {}})


def test_start_row_must_come_first_or_be_finished(tmp_path):
  base = aunets_config.get_config('ablation')
  rows = aunets_config.ABLATION
  with pytest.raises(ValueError, match="'pi_fc6' starts from row 'rgb'.*"
                     "list 'rgb' before 'pi_fc6'"):
    ablate.check_start_rows(base, rows, ['pi_fc6', 'rgb'], [0], str(tmp_path))
  ablate.check_start_rows(base, rows, ['rgb', 'pi_fc6'], [0], str(tmp_path))
  bad = {'b': {'init_from': ml_collections.ConfigDict({'row': 'nope'})}}
  with pytest.raises(ValueError, match="row 'nope'"):
    ablate.check_start_rows(base, bad, ['b'], [0], str(tmp_path))
  # A finished rgb row (its results.json) is enough.
  path = ablate.results_path(ablate.row_config(base, 'rgb', rows['rgb'], 0),
                             str(tmp_path / 'rgb' / 'seed_0'))
  os.makedirs(os.path.dirname(path))
  with open(path, 'w') as f:
    f.write('{}')
  ablate.check_start_rows(base, rows, ['pi_fc6'], [0], str(tmp_path))
  with pytest.raises(ValueError, match='seed 1'):
    ablate.check_start_rows(base, rows, ['pi_fc6'], [0, 1], str(tmp_path))


def test_pi_row_trains_from_the_rgb_rows_run(tiny_data_dir, tmp_path):
  """Tiny rgb and pi_fc6 rows: the pi row loads the rgb row's best weights
  (init_from.json names that run) and, its RGB stream frozen up to fc6
  (table 3), ends with exactly the rgb run's encoder and fc6."""
  base = aunets_config.get_config('test')
  base.data_dir = tiny_data_dir
  base.aus = (1,)
  base.init_from = None
  start = aunets_config.rgb_row_init()
  start.config = 'configs/aunets.py:test'
  rows = {'rgb': aunets_config.ABLATION['rgb'],
          'pi_fc6': dict(aunets_config.ABLATION['pi_fc6'], init_from=start)}
  workdir = str(tmp_path)
  table = ablate.run_ablation(base, rows, ['rgb', 'pi_fc6'], [0], workdir)
  assert set(table['rows']) == {'rgb', 'pi_fc6'}
  # The per-seed digests docs/tables.py reads: each run's numbers and budget.
  with open(os.path.join(workdir, ablate.SEEDS_FILE)) as f:
    per_seed = json.load(f)['rows']
  assert per_seed['rgb']['0']['mean']['f1'] == table['rows']['rgb']['mean_f1']
  assert per_seed['pi_fc6']['0']['stage_steps'] == {
      'None': base.num_train_steps}
  assert per_seed['pi_fc6']['0']['seed'] == 0
  assert 'predictions' not in json.dumps(per_seed)
  key = runs.RunKey(1, au=1)
  rgb_dir = runs.run_dir(base, os.path.join(workdir, 'rgb', 'seed_0'), key)
  pi_config = ablate.row_config(base, 'pi_fc6', rows['pi_fc6'], 0)
  pi_dir = runs.run_dir(pi_config, os.path.join(workdir, 'pi_fc6', 'seed_0'),
                        key)
  with open(os.path.join(pi_dir, 'init_from.json')) as f:
    report = json.load(f)
  assert os.path.realpath(report['source']) == os.path.realpath(rgb_dir)
  assert 'params/motion_encoder/conv1_1/kernel' in report['loaded']
  rgb, _ = checkpointing.restore_raw(rgb_dir)
  pi, _ = checkpointing.restore_raw(pi_dir)
  for layer in ('encoder', 'fc6'):
    for got, want in zip(
        jax_leaves(pi['params'][layer]), jax_leaves(rgb['params'][layer])):
      np.testing.assert_array_equal(got, want)
  # The motion stream trained on (it started as the same copy).
  assert not all(np.array_equal(a, b) for a, b in zip(
      jax_leaves(pi['params']['motion_encoder']),
      jax_leaves(rgb['params']['encoder'])))


def jax_leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]
