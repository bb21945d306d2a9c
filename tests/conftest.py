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
