"""The main job's command line: help texts, a config typo, --init_from."""

import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from au_jax import main

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'au_jax.main', *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300, check=False)


def test_config_variants_read_from_the_source():
  assert main.config_variants(ROOT / 'configs' / 'drml.py') == [
      'cpu', 'gpu', 'paper', 'test']
  aunets = main.config_variants(ROOT / 'configs' / 'aunets.py')
  # VARIANTS = BASE_VARIANTS + (...): names resolved through the module.
  assert {'paper', 'test', 'multiview', 'view', 'paper-pi_fc6'} <= set(aunets)


def test_help_shows_true_run_paths_and_variants():
  out = _run('--help').stdout
  assert 'synthetic_au-default/drml/fold_1' in out
  assert 'configs/drml.py: (default) cpu gpu paper test' in out


def test_config_typo_is_one_clean_line():
  result = _run('--config=configs/drml.py:test',
                '--config.learning_rat=0.1')
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.startswith('Error')]
  assert lines == [
      "Error: unknown config field 'learning_rat' (in "
      "--config.learning_rat=0.1); did you mean 'learning_rate'? Overrides "
      'set fields of the config file; they cannot add new ones.']


def test_init_from_flag_parses_fields():
  got = main.init_from_flag('method=caud,config=configs/caud.py:paper,'
                            'params=.*,au=12,fold=none')
  assert got.to_dict() == {'method': 'caud',
                           'config': 'configs/caud.py:paper',
                           'params': '.*', 'au': 12, 'fold': 'none'}
  assert isinstance(got, ml_collections.ConfigDict)
  with pytest.raises(ValueError, match="'caud' is not FIELD=VALUE"):
    main.init_from_flag('caud')
