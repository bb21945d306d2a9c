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

import ast
import os
import pathlib
import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from au_jax import distributed
from au_jax import train

FLAGS = flags.FLAGS

_CONFIGS_DIR = pathlib.Path(__file__).resolve().parent.parent / 'configs'


def config_variants(path: pathlib.Path) -> list[str]:
  """The variants `get_config(arg)` of a config file accepts: its
  `VARIANTS`, else the strings get_config compares `arg` with (read from
  the source, nothing imported)."""
  tree = ast.parse(path.read_text(encoding='utf-8'))
  assigned = {t.id: node.value for node in tree.body
              if isinstance(node, ast.Assign) for t in node.targets
              if isinstance(t, ast.Name)}

  def strings(node, seen=()):
    out = set()
    for n in ast.walk(node):
      if isinstance(n, ast.Constant) and isinstance(n.value, str):
        out.add(n.value)
      elif (isinstance(n, ast.Name) and n.id in assigned
            and n.id not in seen):
        out |= strings(assigned[n.id], (*seen, n.id))
    return out

  found = strings(assigned['VARIANTS']) if 'VARIANTS' in assigned else set()
  for function in ast.walk(tree):
    if not (isinstance(function, ast.FunctionDef)
            and function.name == 'get_config' and function.args.args):
      continue
    arg = function.args.args[0].arg
    for node in ast.walk(function):
      if isinstance(node, ast.Compare) and any(
          isinstance(s, ast.Name) and s.id == arg
          for s in (node.left, *node.comparators)):
        for side in node.comparators:
          found |= {n.value for n in ast.walk(side)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)}
  return sorted(found - {''})


def _config_help() -> str:
  lines = ['Method config file: configs/<paper>.py[:variant], e.g. '
           'configs/drml.py or configs/drml.py:test. Shipped:']
  for path in sorted(_CONFIGS_DIR.glob('*.py')):
    if 'def get_config' in path.read_text(encoding='utf-8'):
      lines.append(f'  configs/{path.name}: (default) '
                   + ' '.join(config_variants(path)))
  return '\n'.join(lines)


_WORKDIR = flags.DEFINE_string(
    'workdir', 'workdir',
    'Runs go to <workdir>/<dataset>-<dataset_config>/<method>/fold_<k> '
    '(e.g. workdir/synthetic_au-default/drml/fold_1; per-view, per-AU and '
    'per-stage runs add view_<v>/, au_<nn>/, stage_<name>/); the cross-fold '
    'table to <workdir>/<dataset>-<dataset_config>/<method>/'
    'results.{json,md}.')
config_flags.DEFINE_config_file('config', None, _config_help(),
                                lock_config=True)
_INIT_FROM = flags.DEFINE_string(
    'init_from', None,
    'Start from another run where the config has no init_from of its own '
    '(its default None cannot take --config.init_from.<field> overrides): '
    'comma-separated FIELD=VALUE of config.init_from, e.g. '
    '--init_from=method=caud,config=configs/caud.py:paper,params=.* '
    '(fields: method, dataset, dataset_config, fold, view, au, stage, '
    'params, config, classify_field, workdir; unset fields are this run\'s '
    'own).')


def init_from_flag(text: str) -> ml_collections.ConfigDict:
  """`--init_from=FIELD=VALUE,...` as a config.init_from ConfigDict
  (integers for fold, view and au; 'none' kept as the word)."""
  fields = {}
  for item in filter(None, text.split(',')):
    name, sep, value = item.partition('=')
    if not sep or not name:
      raise ValueError(f'--init_from={text!r}: {item!r} is not FIELD=VALUE.')
    fields[name.strip()] = (int(value) if name in ('fold', 'view', 'au')
                            and value.strip().lstrip('-').isdigit()
                            else value.strip())
  return ml_collections.ConfigDict(fields)


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
  config = FLAGS.config
  try:
    if _INIT_FROM.value:
      if config.get('init_from') is not None:
        raise ValueError(
            '--init_from: this config sets init_from already; override its '
            'fields with --config.init_from.<field>=<value>.')
      with config.unlocked():
        config.init_from = init_from_flag(_INIT_FROM.value)
    train.train_and_evaluate(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, FloatingPointError,
          RuntimeError) as error:
    # Bad settings, missing source runs, divergence, held run directories:
    # one message naming the cause, not a traceback.
    if type(error).__module__.startswith(('jax', 'flax', 'orbax')):
      raise
    sys.exit(f'au_jax: {error}')


def unknown_field_message(error: Exception, argv: list[str]) -> str:
  """One clean line for an override of a field the config lacks:
  ml_collections' KeyError text (quoted, escaped, with a 'Did you mean'
  on a second line) reduced to the field, the flag and the suggestion."""
  text = str(error.args[0] if error.args else error)
  text = text.encode('utf-8').decode('unicode_escape')
  field = re.search(r"[\w.]+", text.replace('\\', ''))
  field = field.group(0) if field else text
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  flag = next((a for a in argv[1:] if a.startswith(f'--config.{field}')),
              None)
  message = f'Error: unknown config field {field!r}'
  if flag:
    message += f' (in {flag})'
  if suggestion:
    message += f'; did you mean {suggestion.group(1)!r}?'
  return message + (' Overrides set fields of the config file; they '
                    'cannot add new ones.')


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with a one-line error for unknown config fields."""
  try:
    return FLAGS(argv)
  except (KeyError, AttributeError) as error:
    sys.exit(unknown_field_message(error, argv))
  except flags.Error as error:
    sys.exit(f'Error: {error}\nPass --helpfull to see the flags.')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main, flags_parser=parse_flags)
