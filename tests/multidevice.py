"""Run a test script in a subprocess that sees N CPU devices.

XLA fixes the device count when jax starts, so pmap tests that compare
1 and N devices run their script in a fresh interpreter with
--xla_force_host_platform_device_count=N; the script prints one line
starting with `marker` followed by its numbers.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, devices: int = 8, marker: str = 'RESULT',
               timeout: int = 600) -> list[str]:
  """Runs `script` on `devices` CPU devices; returns the fields after
  `marker` on its last marker line (asserts a clean exit and the line)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  out = subprocess.run([sys.executable, '-c', script], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout,
                       check=False)
  assert out.returncode == 0, out.stderr[-4000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith(marker)]
  assert lines, f'no {marker} line in the output:\n{out.stdout[-2000:]}'
  return lines[-1].split()[1:]
