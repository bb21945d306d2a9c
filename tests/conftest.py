"""Shared fixtures: fast XLA compiles and one tiny synthetic_au build."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Compile time dominates tiny test programs.
jax.config.update('jax_disable_most_optimizations', True)


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  """A data_dir holding synthetic_au/tiny, built once per test session."""
  from au_jax import prepare  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  prepare.prepare('synthetic_au', 'tiny', data_dir)
  return data_dir



def _memory_maps() -> int:
  try:
    with open('/proc/self/maps') as f:
      return sum(1 for _ in f)
  except OSError:  # Not Linux.
    return 0


@pytest.fixture(autouse=True)
def _free_compiled_programs():
  """Drop compiled programs once a worker holds many memory maps.

  XLA's CPU backend maps every compiled executable into memory and JAX's
  caches keep them alive: a long-lived xdist worker gained ~180 memory maps
  a second (test_contract.py alone: 30,000) and crashed, with a segfault in
  the compiler or "can't start new thread", on reaching the kernel's
  vm.max_map_count (65,530 here). Clearing the caches unmaps them (measured:
  29,000 -> 2,300).
  """
  yield
  if _memory_maps() > 20000:
    import gc  # pylint: disable=g-import-not-at-top
    jax.clear_caches()
    gc.collect()
