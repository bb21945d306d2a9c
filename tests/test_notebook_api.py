"""au_jax from a notebook or a plain script.

Scripts run in a subprocess, without an `if __name__ == '__main__':` guard
and without absl flag parsing, as a user's script or a notebook cell would:
dataset builds and grain loaders with worker processes, and the notebook
walk-through docs/quickstart.py. Each script appends its pid to a file at
its top: a worker process that re-ran the script would add a line (or,
before workers skipped the main module, wait forever on its parent's build
lock).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import au_jax
from au_jax import prepare
from au_jax.data import input_pipeline
from au_jax.data import transforms
from configs import drml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(tmp_path, source, env=None, timeout=240):
  """Runs `source` as the file script.py in tmp_path; (result, pids that
  ran the script's top level)."""
  pids = tmp_path / 'pids.txt'
  header = textwrap.dedent(f"""
      import os
      with open({str(pids)!r}, 'a') as pid_file:
        pid_file.write(f'{{os.getpid()}}\\n')
  """)
  script = tmp_path / 'script.py'
  script.write_text(header + textwrap.dedent(source))
  # The checkout's packages (configs, data_builders) on the path, as an
  # installed au_jax has them.
  environment = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
                     JAX_DISABLE_MOST_OPTIMIZATIONS='1', **(env or {}))
  result = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)
  return result, pids.read_text().split()


def test_get_config_is_the_config_file():
  assert (au_jax.get_config('drml:test').to_dict() ==
          drml.get_config('test').to_dict())
  assert au_jax.get_config('drml').to_dict() == drml.get_config().to_dict()
  assert au_jax.get_config('drml:test').crop_size == 66


def test_get_config_names_bad_input():
  with pytest.raises(ValueError, match=r"Unknown config 'nosuch'.*'drml'"):
    au_jax.get_config('nosuch:test')
  with pytest.raises(ValueError, match=r"'configs/drml.py:test'"):
    au_jax.get_config('configs/drml.py:test')
  with pytest.raises(ValueError, match=r"unknown variant 'nosuch'"):
    au_jax.get_config('drml:nosuch')


def test_model_batches_are_cropped_and_normalised(tiny_data_dir):
  config = drml.get_config('test')
  config.data_dir = tiny_data_dir
  data = input_pipeline.fold_data(
      config, input_pipeline.open_dataset(config), 1)
  host = list(input_pipeline.eval_batches(config, data, 'test'))
  batches = list(input_pipeline.model_batches(config, data, 'test'))
  assert len(batches) == len(host) == 4  # 32 test frames in batches of 8.
  crop = transforms.CenterCrop(config.resize_size, config.crop_size)
  normalize = transforms.Normalize(tuple(config.pixel_mean),
                                   tuple(config.pixel_std))
  for batch, raw in zip(batches, host):
    assert batch['image'].shape == (8, 66, 66, 3)
    assert batch['image'].dtype == np.float32
    expected = [normalize.map(crop.map({'image': image, 'landmarks': marks}))
                for image, marks in zip(raw['image'], raw['landmarks'])]
    np.testing.assert_allclose(
        batch['image'], np.stack([e['image'] for e in expected]), atol=1e-5)
    np.testing.assert_allclose(
        batch['landmarks'], np.stack([e['landmarks'] for e in expected]),
        atol=1e-4)
    np.testing.assert_array_equal(batch['au_occurrence'],
                                  raw['au_occurrence'])
  assert sum(int(np.sum(b['mask'])) for b in batches) == 32


def test_builds_with_workers_from_an_unguarded_script(tmp_path):
  # jax imported first: synthetic_au then spawns its renderers (forking a
  # process that runs JAX threads can deadlock); bp4d's dummy data goes
  # through the real-dataset WorkerRunner.
  out = tmp_path / 'data'
  result, pids = run_script(tmp_path, f"""
      import jax
      from au_jax import prepare
      prepare.prepare('synthetic_au', 'tiny', {str(out)!r})
      prepare.prepare('bp4d', 'tiny', {str(out)!r},
                      {os.path.join(ROOT, 'data_builders', 'bp4d',
                                    'dummy_data')!r})
      print('DONE')
  """, env={'AU_JAX_SYNTH_WORKERS': '2', 'AU_JAX_BUILD_WORKERS': '2'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Built synthetic_au/tiny/1.0.0: 96 frames' in result.stdout
  assert 'Built bp4d/tiny/' in result.stdout and 'DONE' in result.stdout
  assert 'Waiting for the build' not in result.stderr
  assert len(pids) == 1  # No worker re-ran the script.
  for name in ('synthetic_au', 'bp4d'):
    assert prepare.stale_scratch(str(out), name) == []


def test_loader_with_workers_from_an_unguarded_script(tmp_path,
                                                      tiny_data_dir):
  result, pids = run_script(tmp_path, f"""
      from absl import flags
      import au_jax
      from au_jax.data import input_pipeline
      print('flags parsed before:', flags.FLAGS.is_parsed())
      config = au_jax.get_config('drml:test')
      config.data_dir = {tiny_data_dir!r}
      config.num_workers = 2
      data = input_pipeline.fold_data(
          config, input_pipeline.open_dataset(config), 1)
      iterator = iter(input_pipeline.train_loader(config, data, seed=0))
      for _ in range(3):
        batch = next(iterator)
        print('batch', batch['image'].shape, batch['au_occurrence'].shape)
      del iterator  # Stops the workers before the interpreter exits.
  """)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'flags parsed before: False' in result.stdout
  assert result.stdout.count('batch (8, 72, 72, 3) (8, 12)') == 3
  assert len(pids) == 1  # The workers did not re-run the script.


def test_a_child_of_the_build_fails_instead_of_waiting(tmp_path):
  """A process the lock holder started would wait for its own parent."""
  child = textwrap.dedent(f"""
      from au_jax import prepare
      with prepare.build_lock({str(tmp_path)!r}, 'synthetic_au'):
        pass
  """)
  with prepare.build_lock(str(tmp_path), 'synthetic_au'):
    result = subprocess.run(
        [sys.executable, '-c', child], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT), timeout=120, check=False)
  assert result.returncode != 0
  error = result.stderr.strip().splitlines()[-1]
  assert error.startswith('au_jax.prepare.BuildLockError: synthetic_au:')
  assert f'pid {os.getpid()} on' in error and 'its parent' in error


def test_quickstart_runs_as_a_script(tmp_path, tiny_data_dir):
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'docs', 'quickstart.py')],
      cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
      env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
               JAX_DISABLE_MOST_OPTIMIZATIONS='1',
               AU_JAX_DATA_DIR=tiny_data_dir, TMPDIR=str(tmp_path)))
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert 'drml drml synthetic_au tiny' in lines
  assert 'image (8, 66, 66, 3) float32 -> logits (8, 12)' in lines
  assert 'untrained model, test frames: (32, 12)' in lines
  assert any(line.startswith('mean F1 over AUs: ') for line in lines)
  assert any(line.startswith('step 4 thresholds') for line in lines)
  assert 'same from the array: True' in lines
  (workdir,) = tmp_path.glob('au_jax_quickstart_*')
  run_dir = workdir / 'synthetic_au-tiny' / 'drml' / 'fold_1'
  assert (run_dir / 'config.json').exists()
  assert (run_dir / 'test_results.json').exists()
