"""Fold protocols and fold numbers: how subjects are dealt into k folds.

Protocols (`config.fold_protocol`, `Protocol`):
- 'standard' (default): the 3 parts of folds.py (the standard lists, or
  sorted ids dealt round-robin: `round_robin_parts`).
- 'kfold': `config.num_folds` = k parts of any dataset au_jax has folds for,
  dealt from a seeded order of the available subject ids (`kfold_parts`):
  the thesis' 10-fold subject-exclusive BP4D protocol (caud_thesis.txt
  5.1.4, k=10). Named deviation: the thesis used iCPM's 10 splits, which
  were never released, so ours are drawn from `config.fold_seed`. The order
  is sha256('<seed>:<id>') (Python's hashlib, the same on every machine and
  numpy version), so the folds are reproducible from the seed; they are
  written to every run's results (train.py) and to the cross-fold table.
  A k-fold run's directories sit under `kfold<k>_seed<s>/` (runs.py), so its
  fold 3 never shares checkpoints with the standard fold 3.

Fold numbers are 1..k (`check_fold`, `parse_folds`). folds.py re-exports
the public names; callers use them as `folds.<name>`.
"""

import dataclasses
import hashlib
import numbers
import re
from typing import Sequence

NUM_FOLDS = 3


def check_unique(subjects: Sequence[str], where: str) -> None:
  """Raises ValueError naming the subjects `subjects` repeats."""
  seen, repeated = set(), set()
  for s in subjects:
    (repeated if s in seen else seen).add(s)
  if repeated:
    raise ValueError(f'{where} repeats subjects {sorted(repeated)}.')


def check_fold(fold: int, num_folds: int = NUM_FOLDS) -> int:
  """Returns `fold` as an int, or raises naming it and the valid range."""
  if isinstance(fold, bool) or not isinstance(fold, numbers.Integral):
    raise ValueError(f'fold must be an int in 1..{num_folds}, got {fold!r}.')
  if not 1 <= fold <= num_folds:
    raise ValueError(f'fold {fold} is out of range: valid folds are '
                     f'1..{num_folds} (fold k tests on part k).')
  return int(fold)


STANDARD = 'standard'
KFOLD = 'kfold'
PROTOCOLS = (STANDARD, KFOLD)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How subjects are dealt into folds (module docstring).

  name: 'standard' (the 3 standard parts) or 'kfold' (num_folds parts from
  a seeded order); num_folds: 3 for 'standard', >= 2 for 'kfold'; seed:
  the 'kfold' order's seed (int >= 0; unused by 'standard').
  """
  name: str = STANDARD
  num_folds: int = NUM_FOLDS
  seed: int = 0

  def __post_init__(self):
    if self.name not in PROTOCOLS:
      raise ValueError(f'fold_protocol={self.name!r}: expected one of '
                       f'{PROTOCOLS}.')
    k = self.num_folds
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
      raise ValueError(f'num_folds={k!r}: expected an int >= 2.')
    if self.name == STANDARD and k != NUM_FOLDS:
      raise ValueError(
          f'num_folds={k} with fold_protocol={STANDARD!r}: the standard '
          f"protocol has {NUM_FOLDS} parts; set fold_protocol='{KFOLD}' for "
          f'{k} seeded folds.')
    seed = self.seed
    if (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
        or seed < 0):
      raise ValueError(f'fold_seed={seed!r}: expected an int >= 0.')
    object.__setattr__(self, 'num_folds', int(k))
    object.__setattr__(self, 'seed', int(seed))

  @property
  def dir_name(self) -> str | None:
    """None for 'standard'; 'kfold<k>_seed<s>' (a run-directory level)."""
    if self.name == STANDARD:
      return None
    return f'{KFOLD}{self.num_folds}_seed{self.seed}'

  def as_dict(self) -> dict[str, object]:
    """What results files record: {'name', 'num_folds'[, 'seed']}."""
    out = {'name': self.name, 'num_folds': self.num_folds}
    if self.name == KFOLD:
      out['seed'] = self.seed
    return out


def config_protocol(config) -> Protocol:
  """The Protocol of a config's fold_protocol / num_folds / fold_seed
  fields (absent or None: the standard 3 folds)."""
  name = config.get('fold_protocol') or STANDARD
  num_folds = config.get('num_folds')
  if num_folds is None:
    if name == KFOLD:
      raise ValueError(f"fold_protocol='{KFOLD}' needs config.num_folds "
                       '(the thesis: 10).')
    num_folds = NUM_FOLDS
  seed = config.get('fold_seed')
  return Protocol(name, num_folds, 0 if seed is None else seed)


def seeded_order(subjects: Sequence[str], seed: int) -> list[str]:
  """`subjects` sorted by sha256('<seed>:<id>') hex digest (ties: by id)."""
  def key(subject):
    digest = hashlib.sha256(f'{seed}:{subject}'.encode('utf-8')).hexdigest()
    return digest, subject
  return sorted((str(s) for s in subjects), key=key)


def kfold_parts(subjects: Sequence[str], num_folds: int,
                seed: int) -> tuple[tuple[str, ...], ...]:
  """k parts: the seeded order dealt round-robin, part k (1-based) holding
  order[k-1::num_folds] (sizes differ by at most one; 41 BP4D subjects in
  10 parts: one of 5, nine of 4)."""
  subjects = [str(s) for s in subjects]
  check_unique(subjects, 'k-fold subjects')
  if len(subjects) < num_folds:
    raise ValueError(f'{num_folds}-fold protocol needs at least {num_folds} '
                     f'subjects; the data has {len(subjects)}: '
                     f'{sorted(subjects)}.')
  order = seeded_order(subjects, seed)
  return tuple(tuple(order[k::num_folds]) for k in range(num_folds))


def round_robin_parts(
    subjects: Sequence[str],
    num_parts: int = NUM_FOLDS) -> tuple[tuple[str, ...], ...]:
  """Sorted ids dealt round-robin: part k holds sorted[k-1::num_parts]."""
  ordered = sorted(subjects)
  return tuple(tuple(ordered[k::num_parts]) for k in range(num_parts))


def parse_folds(value: int | str | Sequence[int],
                num_folds: int = NUM_FOLDS) -> tuple[int, ...]:
  """Folds from a flag or config value: 2, '2', '1,2,3', '(1, 2, 3)', [1, 3].

  Returns the folds in the order given; repeats, empty values and folds
  outside 1..num_folds (3, or a k-fold protocol's k) are errors.
  """
  original = value
  if isinstance(value, bool):
    raise ValueError(f'folds: expected fold numbers in 1..{num_folds}, got '
                     f'{original!r}.')
  if isinstance(value, numbers.Integral):
    items = [value]
  elif isinstance(value, str):
    text = value.strip()
    if len(text) >= 2 and (text[0], text[-1]) in (('(', ')'), ('[', ']')):
      text = text[1:-1]
    pieces = [p.strip() for p in text.split(',')]
    if pieces and pieces[-1] == '' and len(pieces) > 1:  # '(1,)'
      pieces = pieces[:-1]
    if not all(re.fullmatch(r'[+-]?\d+', p) for p in pieces):
      raise ValueError(f'folds: cannot parse {original!r}; write e.g. 2, '
                       f"'1,2,3' or '(1, 2, 3)' with folds in 1..{num_folds}.")
    items = [int(p) for p in pieces]
  elif isinstance(value, Sequence):
    items = list(value)
  else:
    raise ValueError(f'folds: cannot parse {original!r} of type '
                     f'{type(original).__name__}; give an int, a string '
                     "like '1,2,3', or a sequence of ints.")
  if not items:
    raise ValueError(f'folds: {original!r} names no fold.')
  folds = []
  for item in items:
    if isinstance(item, bool) or not isinstance(item, numbers.Integral):
      raise ValueError(f'folds: {item!r} in {original!r} is not an int fold '
                       f'number in 1..{num_folds}.')
    if not 1 <= item <= num_folds:
      raise ValueError(f'folds: fold {item} in {original!r} is out of range; '
                       f'valid folds are 1..{num_folds}.')
    folds.append(int(item))
  check_unique(folds, f'folds {original!r}')
  return tuple(folds)
