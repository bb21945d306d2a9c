r"""au_jax entry point: train and evaluate a method on its folds.

  python -m au_jax.main --config=configs/drml.py
  python -m au_jax.main --config=configs/drml.py:paper --workdir=runs \
      --config.dataset=bp4d --config.dataset_config=crop

Multi-process (multi-host) jobs: add --coordinator_address=HOST:PORT
--num_processes=N --process_id=I on every process, or run under `srun`
(SLURM), where they are detected (au_jax/distributed.py, README "Scaling
out").

Hyper-parameters live in the config file; override any field with
`--config.<field>=<value>` (unknown fields are an error).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from au_jax import distributed
from au_jax import train

FLAGS = flags.FLAGS

_WORKDIR = flags.DEFINE_string(
    'workdir', 'workdir',
    'Runs go to <workdir>/<dataset>/<method>/fold_<k>; the cross-fold table '
    'to <workdir>/<dataset>/<method>/results.{json,md}.')
config_flags.DEFINE_config_file(
    'config', None, 'Method config file, e.g. configs/drml.py[:variant].',
    lock_config=True)


class _QuietLibraries(logging.logging.Filter):
  """Drops orbax's per-save INFO chatter; keeps its warnings and ours."""

  def filter(self, record):
    return (record.levelno >= logging.logging.WARNING
            or '/orbax/' not in record.pathname)


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.config is None:
    raise app.UsageError('--config is required, e.g. --config=configs/drml.py')
  try:
    # Before any other JAX call; a no-op for a single process.
    if distributed.initialize_from_flags() and not distributed.is_primary():
      # Tables and summaries are printed once, by process 0; logs (stderr)
      # stay on every process.
      sys.stdout = open(os.devnull, 'w', encoding='utf-8')
  except ValueError as error:
    sys.exit(f'au_jax: {error}')
  logging.info('JAX devices: %s', jax.devices())
  try:
    train.train_and_evaluate(FLAGS.config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, FloatingPointError,
          RuntimeError) as error:
    # Bad settings, missing source runs, divergence, held run directories:
    # one message naming the cause, not a traceback.
    if type(error).__module__.startswith(('jax', 'flax', 'orbax')):
      raise
    sys.exit(f'au_jax: {error}')


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with a one-line error for unknown config fields."""
  try:
    return FLAGS(argv)
  except (KeyError, AttributeError) as error:
    overrides = [a for a in argv[1:] if a.startswith('--config.')]
    field = str(error.args[0] if error.args else error).strip('\'"')
    sys.exit(f'Error: unknown config field {field!r} in {overrides}. Fields '
             'are those of the config file (see its get_config); overrides '
             'cannot add new ones.')
  except flags.Error as error:
    sys.exit(f'Error: {error}\nPass --helpfull to see the flags.')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main, flags_parser=parse_flags)
