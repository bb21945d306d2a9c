"""Every shipped config still dumps to its recorded values.

tests/data/config_dumps.json holds, for every (config file, variant) that
tests/test_config_checks.py walks (for configs/aunets.py: every base
variant with every fusion) and for every config's ABLATION rows,
`get_config(variant).to_dict()` with FieldReferences resolved, as sorted
JSON. A run's fingerprint (checkpointing.fingerprint) is made of these
values, so a refactor of the config files must leave them all in place;
a deliberate change to a config regenerates only that file's entries:

  python tests/test_configs_dump.py --update=lpnet
"""

import argparse
import importlib
import json
import pathlib
import sys

import ml_collections
import pytest

from au_jax.models import aunets

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# pylint: disable-next=g-import-not-at-top,wrong-import-position
import test_config_checks

DUMPS = ROOT / 'tests' / 'data' / 'config_dumps.json'


def _plain(value):
  """JSON values of `value` (ConfigDicts as dicts, tuples as lists)."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  return json.loads(json.dumps(value, default=list, sort_keys=True))


def _variants(name: str) -> list[str]:
  # pylint: disable-next=protected-access
  found = test_config_checks._variants(ROOT / 'configs' / f'{name}.py')
  if name == 'aunets':
    bases = importlib.import_module('configs.aunets').BASE_VARIANTS
    found = set(found) | {f'{base}-{fusion}' for base in bases
                          for fusion in aunets.FUSIONS}
  return sorted(found)


def _names() -> list[str]:
  return [path.stem for path in test_config_checks.CONFIG_FILES]


def dump(name: str) -> dict[str, object]:
  """'<variant>' -> config values and 'ABLATION' -> rows of configs/<name>."""
  module = importlib.import_module(f'configs.{name}')
  out = {f':{variant}': _plain(module.get_config(variant))
         for variant in _variants(name)}
  if hasattr(module, 'ABLATION'):
    out['ABLATION'] = _plain(
        {row: {field: _plain(value) for field, value in overrides.items()}
         for row, overrides in module.ABLATION.items()})
  return out


def _recorded() -> dict[str, dict[str, object]]:
  if not DUMPS.exists():  # Before the first `--update=all`.
    return {}
  return json.loads(DUMPS.read_text(encoding='utf-8'))


def _keys() -> list[tuple[str, str]]:
  return [(name, key) for name, entries in _recorded().items()
          for key in entries]


def test_every_config_is_recorded():
  recorded = _recorded()
  assert sorted(recorded) == _names()
  for name in _names():
    assert sorted(recorded[name]) == sorted(dump(name)), name
  assert ':paper' in recorded['drml'] and ':test' in recorded['lpnet']
  assert ':paper-pi_fc6' in recorded['aunets']


def _text(values: dict[str, object], field: str) -> str:
  """`field` of `values` as JSON text, as the fingerprint hashes it (0 and
  0.0 differ)."""
  return json.dumps(values.get(field, '<absent>'), sort_keys=True)


@pytest.mark.parametrize('name,key', _keys())
def test_config_dumps_to_its_recorded_values(name, key):
  recorded = _recorded()[name][key]
  module = importlib.import_module(f'configs.{name}')
  if key == 'ABLATION':
    now = dump(name)['ABLATION']
  else:
    now = _plain(module.get_config(key[1:]))
  changed = sorted(field for field in set(recorded) | set(now)
                   if _text(recorded, field) != _text(now, field))
  assert not changed, f'configs/{name}.py {key}: {changed} moved'


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--update', default='',
                      help="Comma-separated config names to re-record, or "
                      "'all'.")
  args = parser.parse_args(argv)
  recorded = _recorded()
  names = (_names() if args.update == 'all'
           else [n for n in args.update.split(',') if n])
  for name in names:
    recorded[name] = dump(name)
  recorded = {name: recorded[name] for name in _names() if name in recorded}
  DUMPS.parent.mkdir(parents=True, exist_ok=True)
  DUMPS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + '\n',
                   encoding='utf-8')
  print(f'{DUMPS}: {", ".join(names)} re-recorded.')


if __name__ == '__main__':
  main()
