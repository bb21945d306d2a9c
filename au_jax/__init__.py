"""au_jax: facial Action Unit detection in JAX/Flax (linen).

From Python (a script or a notebook; docs/quickstart.py walks through it):

  config = au_jax.get_config('drml:test')   # configs/drml.py, variant 'test'

This module also holds what lets au_jax start worker processes (dataset
builds, grain loaders) from a plain script without an
`if __name__ == '__main__':` guard, and from a notebook kernel:
`spawn_without_main` and `spawn_without_main_for`.
"""

import contextlib
import importlib
from multiprocessing import spawn
import pkgutil
import threading
from typing import Iterator

import ml_collections

__version__ = '0.1.0'


def get_config(name: str) -> ml_collections.ConfigDict:
  """The config `configs/<method>.py` makes: 'drml', 'drml:test', ...

  The same configs as `python -m au_jax.main --config=configs/drml.py:test`:
  'method:variant' calls `configs.<method>.get_config('variant')`; a name
  without ':' calls `get_config()` (the method's main job).

  Raises:
    ValueError: `name` names no config file (lists the known ones), or the
      `configs` package is not importable (says how to install it).
  """
  method, has_variant, variant = name.partition(':')
  if not method.isidentifier():
    raise ValueError(
        f"get_config takes a config name such as 'drml' or 'drml:test' "
        f'(configs/drml.py, variant test), got {name!r}.')
  module_name = f'configs.{method}'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as error:
    if error.name == 'configs':
      raise ValueError(
          'The configs package is not importable: install au_jax with it '
          '(`pip install -e .` in the checkout, again after an update that '
          'added it), or run from the checkout root.') from None
    if error.name != module_name:
      raise  # The config exists; one of its own imports is missing.
    configs = importlib.import_module('configs')
    known = sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                   if m.name != 'common')
    raise ValueError(f'Unknown config {method!r}: no {module_name} in '
                     f'{list(configs.__path__)}. Known: {known}.') from None
  return module.get_config(variant) if has_variant else module.get_config()


# --- Worker processes that do not re-run the caller's script.
#
# A spawned process first re-imports its parent's main module, so that
# functions defined there can be unpickled. A script without an
# `if __name__ == '__main__':` guard then runs again, from the top, in every
# worker: a build waits for the lock its own parent holds, a loader starts
# processes while still bootstrapping (multiprocessing's RuntimeError). No
# au_jax worker needs the main module: build workers run library functions
# and grain sends its pipeline by value (cloudpickle). So their processes
# start as they do from a notebook kernel, whose __main__ has no file to
# re-run. multiprocessing has no option for this: au_jax wraps the function
# that gathers what a spawned child prepares (multiprocessing.spawn's
# get_preparation_data), dropping the main module only for these processes.

_MAIN_MODULE_KEYS = ('init_main_from_path', 'init_main_from_name')
_spawn_preparation_data = None  # The wrapped function, once installed.
_skip_lock = threading.Lock()
_skip_depth = 0  # Open spawn_without_main blocks, over all threads.
_skip_prefixes: tuple[str, ...] = ()


def _preparation_data(name: str) -> dict:
  data = _spawn_preparation_data(name)
  if _skip_depth or name.startswith(_skip_prefixes):
    for key in _MAIN_MODULE_KEYS:
      data.pop(key, None)
  return data


def _install() -> None:
  global _spawn_preparation_data
  if spawn.get_preparation_data is not _preparation_data:
    _spawn_preparation_data = spawn.get_preparation_data
    spawn.get_preparation_data = _preparation_data


@contextlib.contextmanager
def spawn_without_main() -> Iterator[None]:
  """Processes spawned inside (from any thread) skip the main module.

  For au_jax's own workers, whose targets are importable library functions:
  a caller's script then needs no main guard. Process-wide while open,
  since libraries (TFDS, concurrent.futures) may start them from threads.
  """
  global _skip_depth
  with _skip_lock:
    _install()
    _skip_depth += 1
  try:
    yield
  finally:
    with _skip_lock:
      _skip_depth -= 1


def spawn_without_main_for(prefix: str) -> None:
  """Processes spawned from now on whose name starts with `prefix` skip the
  main module (for workers a library starts when it likes, e.g. grain's)."""
  global _skip_prefixes
  if not prefix:
    raise ValueError('spawn_without_main_for needs a non-empty name prefix.')
  with _skip_lock:
    _install()
    if prefix not in _skip_prefixes:
      _skip_prefixes += (prefix,)

