"""Subject-exclusive 3-fold protocols: which subjects train, validate and test.

Records are stored one subject per TFDS split (see records.py), so a fold is a
choice of split names made here at read time. Fold k tests on part k and trains
on the other two parts; validation subjects, when asked for, come from the
training parts only, never from the test part (../shared/reference/
protocols.md: one peer validates on its test fold, which inflates its numbers).
The fold 'all' (cross-dataset protocol) trains on every subject but the
validation ones and has no test subject: the test data is another dataset,
read whole (`test_subjects`).

Part lists per dataset:
- bp4d, disfa: the standard parts of DRML / JAA-Net / ME-GraphAU / AUNets,
  copied as data from protocols.md, in the order written there.
- fera2017: its training partition is the 41 BP4D subjects, so it reuses BP4D's
  parts; fold k then tests on FERA 2017 renderings of BP4D part k. This is NOT
  the challenge protocol (train -> validation partition); a FERA builder whose
  splits hold other subject ids gets an error naming them.
- unbc_mcmaster, synthetic_au, ck_plus, rafd: no standard list. The
  available subject ids are sorted (Python string order) and dealt
  round-robin: part k (1-based) holds sorted ids k-1, k+2, k+5, ..., so
  part sizes differ by at most one (24 subjects -> 8/8/8; 25 -> 9/8/8).

Protocols (`config.fold_protocol`): the standard 3 parts above, or seeded
k folds ('kfold'): `Protocol`, `kfold_parts`, the fold-number checks and
`parse_folds`, below.
"""


from absl import logging
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


ALL = 'all'  # Every subject trains (cross-dataset protocol).

# Standard subject-exclusive parts (protocols.md); fold k tests on part k.
PARTS = {
    'bp4d': (
        ('F001', 'M007', 'F018', 'F008', 'F002', 'M004', 'F010', 'F009',
         'M012', 'M001', 'F016', 'M014', 'F023', 'M008'),
        ('M011', 'F003', 'M010', 'M002', 'F005', 'F022', 'M018', 'M017',
         'F013', 'M016', 'F020', 'F011', 'M013', 'M005'),
        ('F007', 'F015', 'F006', 'F019', 'M006', 'M009', 'F012', 'M003',
         'F004', 'F021', 'F017', 'M015', 'F014'),
    ),
    'disfa': (
        ('SN002', 'SN010', 'SN001', 'SN026', 'SN027', 'SN032', 'SN030',
         'SN009', 'SN016'),
        ('SN013', 'SN018', 'SN011', 'SN028', 'SN012', 'SN006', 'SN031',
         'SN021', 'SN024'),
        ('SN003', 'SN029', 'SN023', 'SN025', 'SN008', 'SN005', 'SN007',
         'SN017', 'SN004'),
    ),
}
# Datasets whose subjects are another dataset's subjects (module docstring).
PARTS_OF = {'bp4d': 'bp4d', 'disfa': 'disfa', 'fera2017': 'bp4d'}
# Datasets without a standard list: sorted ids dealt round-robin.
ROUND_ROBIN = ('unbc_mcmaster', 'synthetic_au', 'ck_plus', 'rafd', 'vggface2',
               'celeba', 'lfw')

# A TFDS split name (tensorflow_datasets/core/splits.py accepts [\w-]+).
_SPLIT_NAME = re.compile(r'^[\w-]+$')


@dataclasses.dataclass(frozen=True)
class FoldSubjects:
  """Subject ids of one fold; each tuple is sorted, the three are disjoint.

  The checks run in `__post_init__`, so every FoldSubjects ever built (on
  every load of a fold) is verified, not only those from `fold_subjects`.
  """
  train: tuple[str, ...]
  validation: tuple[str, ...]
  test: tuple[str, ...]

  def __post_init__(self):
    for name in ('train', 'validation', 'test'):
      subjects = getattr(self, name)
      if isinstance(subjects, str):
        raise TypeError(f'FoldSubjects.{name} must be a sequence of subject '
                        f'ids, got the string {subjects!r}.')
      subjects = tuple(sorted(str(s) for s in subjects))
      check_unique(subjects, f'FoldSubjects.{name}')
      object.__setattr__(self, name, subjects)
    # An empty test tuple is the 'all' fold (every subject trains or
    # validates; the test data is another dataset), an empty train tuple a
    # test-only view of a dataset (cross-dataset evaluation).
    if not self.test and not self.train:
      raise ValueError('FoldSubjects has no train and no test subject: it '
                       'would read nothing.')
    pairs = (('train', 'validation'), ('train', 'test'),
             ('validation', 'test'))
    for first, second in pairs:
      shared = sorted(set(getattr(self, first)) & set(getattr(self, second)))
      if shared:
        raise ValueError(f'Subjects {shared} are in both {first} and '
                         f'{second}: folds must be subject-exclusive.')

  @property
  def all(self) -> tuple[str, ...]:
    return tuple(sorted(self.train + self.validation + self.test))


# Split-name prefix of FERA 2017's challenge-validation subjects.
FERA_VALIDATION_PREFIX = 'VA_'


def _check_dataset(dataset: str) -> None:
  if dataset not in PARTS_OF and dataset not in ROUND_ROBIN:
    raise ValueError(f'Unknown dataset {dataset!r} for folds; known: '
                     f'{sorted(PARTS_OF) + list(ROUND_ROBIN)}.')


def _protocol_subjects(dataset: str, available: Sequence[str]) -> list[str]:
  """The available ids a fold protocol deals (FERA 2017's challenge-
  validation splits left out, logged)."""
  available = [str(s) for s in available]
  check_unique(available, f'available subjects of {dataset}')
  if dataset == 'fera2017':
    # FERA 2017's validation partition (splits `VA_<id>`, the same people as
    # BP4D's) is outside the BP4D-part folds: leave it out, logged.
    held_out = [s for s in available if s.startswith(FERA_VALIDATION_PREFIX)]
    if held_out:
      logging.info('fera2017: %d challenge-validation splits (%s...) are not '
                   'part of the fold protocol.', len(held_out), held_out[0])
    available = [s for s in available
                 if not s.startswith(FERA_VALIDATION_PREFIX)]
  return available


def dataset_parts(dataset: str, available: Sequence[str],
                  strict: bool = True) -> tuple[tuple[str, ...], ...]:
  """The 3 parts of `dataset` restricted to the `available` subject ids.

  Args:
    dataset: an au_jax dataset name (aus.DATASET_AUS keys).
    available: subject ids the built dataset holds (its split names).
    strict: if True, a listed subject missing from `available` is an error;
      if False (miniature dummy-data builds), it is dropped and the number
      dropped is logged. Available subjects that no list names are an error
      either way: they would silently never be read.

  Returns:
    3 tuples of subject ids (order of the standard list, or sorted).
  """
  available = _protocol_subjects(dataset, available)
  if dataset in ROUND_ROBIN:
    return round_robin_parts(available)
  _check_dataset(dataset)
  parts = PARTS[PARTS_OF[dataset]]
  listed = {s for part in parts for s in part}
  unlisted = sorted(set(available) - listed)
  if unlisted:
    raise ValueError(
        f'{dataset}: subjects {unlisted} are in the data but in none of the '
        f'standard {PARTS_OF[dataset]} parts (au_jax/data/folds.py PARTS); they '
        'would never be read. Remove those splits or extend the lists.')
  missing = sorted(listed - set(available))
  if missing and strict:
    raise ValueError(
        f'{dataset}: the standard parts name subjects {missing} that the '
        f'built data lacks (available: {sorted(available)}). Build the full '
        'dataset, or pass strict=False to drop them (miniature builds).')
  if missing:
    logging.warning('%s: dropping %d listed subjects absent from the data '
                    '(strict=False): %s', dataset, len(missing), missing)
  keep = set(available)
  return tuple(tuple(s for s in part if s in keep) for part in parts)


def pick_validation(train: Sequence[str],
                    num_validation: int) -> tuple[str, ...]:
  """`num_validation` evenly spaced ids of the sorted training subjects.

  Of n sorted ids, picks index floor((2i+1) n / (2v)) for i < v: the centres of
  v equal runs, so with BP4D's F/M-ordered ids both sexes are drawn. No seed:
  the choice depends on the subject set only.
  """
  ordered = sorted(train)
  n, v = len(ordered), num_validation
  if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
    raise ValueError(f'num_validation must be an int >= 0, got {v!r}.')
  if v == 0:
    return ()
  if v >= n:
    raise ValueError(f'num_validation={v} must be smaller than the {n} '
                     'training subjects of the fold (train would be empty).')
  return tuple(ordered[(2 * i + 1) * n // (2 * v)] for i in range(v))


def subjects_for_fold(parts: Sequence[Sequence[str]], fold: int,
                      num_validation: int = 0,
                      where: str = 'parts',
                      num_folds: int = NUM_FOLDS) -> FoldSubjects:
  """Fold `fold` (1-based) of explicit `parts`: test = part k, train = rest."""
  fold = check_fold(fold, num_folds)
  if len(parts) != num_folds:
    raise ValueError(f'{where}: expected {num_folds} parts, got {len(parts)}.')
  for i in range(num_folds):
    for j in range(i + 1, num_folds):
      shared = sorted(set(parts[i]) & set(parts[j]))
      if shared:
        raise ValueError(f'{where}: subjects {shared} are in both part '
                         f'{i + 1} and part {j + 1}: parts must not overlap.')
  test = tuple(parts[fold - 1])
  if not test:
    raise ValueError(f'{where}: part {fold} (the test part of fold {fold}) '
                     'has no available subject.')
  train = [s for k, part in enumerate(parts) if k != fold - 1 for s in part]
  validation = pick_validation(train, num_validation)
  train = [s for s in train if s not in set(validation)]
  return FoldSubjects(train=tuple(train), validation=validation, test=test)


def all_subjects(dataset: str, available: Sequence[str],
                 num_validation: int = 0, strict: bool = True) -> FoldSubjects:
  """The 'all' fold: every subject of the protocol trains, except
  `num_validation` (`pick_validation`) held out for validation; no test
  subject (the cross-dataset protocol tests on another dataset).

  The subject set is that of the three parts (`dataset_parts`, same checks),
  so FERA 2017's challenge-validation splits stay out here too.
  """
  parts = dataset_parts(dataset, available, strict=strict)
  everyone = [s for part in parts for s in part]
  if not everyone:
    raise ValueError(f'{dataset}: no available subject to train on '
                     f'(available: {sorted(available)}).')
  validation = pick_validation(everyone, num_validation)
  train = [s for s in everyone if s not in set(validation)]
  return FoldSubjects(train=tuple(train), validation=validation, test=())


def test_subjects(dataset: str, available: Sequence[str],
                  strict: bool = True) -> FoldSubjects:
  """Every subject of `dataset`'s protocol as test subjects, none training:
  the unseen dataset of the cross-dataset protocol."""
  parts = dataset_parts(dataset, available, strict=strict)
  everyone = tuple(s for part in parts for s in part)
  if not everyone:
    raise ValueError(f'{dataset}: no available subject to test on '
                     f'(available: {sorted(available)}).')
  return FoldSubjects(train=(), validation=(), test=everyone)


def fold_subjects(dataset: str, fold: int | str, available: Sequence[str],
                  num_validation: int = 0, strict: bool = True,
                  protocol: Protocol | None = None) -> FoldSubjects:
  """Train/validation/test subject ids of `dataset`'s fold `fold` (1..3).

  Args:
    dataset: 'bp4d', 'disfa', 'fera2017', 'unbc_mcmaster' or 'synthetic_au'.
    fold: 1..3; fold k tests on part k and trains on the other two. 'all'
      trains on every subject (`all_subjects`, no test subject).
    available: subject ids (TFDS split names) of the built dataset, e.g.
      `list(builder.info.splits)`.
    num_validation: subjects moved from the training parts to validation
      (`pick_validation`); 0 gives an empty validation tuple.
    strict: see `dataset_parts` (standard protocol; 'kfold' deals the
      available subjects, whatever they are).
    protocol: None or Protocol() = the standard 3 parts; a 'kfold'
      Protocol: fold 1..k of `kfold_parts` over the available subjects.

  Returns:
    FoldSubjects with sorted, pairwise disjoint tuples.
  """
  if isinstance(fold, str) and fold.strip() == ALL:
    return all_subjects(dataset, available, num_validation, strict)
  protocol = protocol or Protocol()
  check_fold(fold, protocol.num_folds)
  if protocol.name == KFOLD:
    _check_dataset(dataset)
    parts = kfold_parts(_protocol_subjects(dataset, available),
                        protocol.num_folds, protocol.seed)
  else:
    parts = dataset_parts(dataset, available, strict=strict)
  return subjects_for_fold(parts, fold, num_validation,
                           where=f'{dataset} fold {fold}',
                           num_folds=protocol.num_folds)


def split_spec(subjects: Sequence[str]) -> str:
  """TFDS split string reading `subjects`: ('S01', 'S02') -> 'S01+S02'."""
  if isinstance(subjects, str):
    raise TypeError(f'split_spec takes a sequence of subject ids, got the '
                    f'string {subjects!r}.')
  subjects = [str(s) for s in subjects]
  if not subjects:
    raise ValueError('split_spec: no subjects given; an empty split would '
                     'read nothing.')
  check_unique(subjects, 'split_spec subjects')
  bad = [s for s in subjects if not _SPLIT_NAME.match(s)]
  if bad:
    raise ValueError(f'split_spec: {bad} are not valid TFDS split names '
                     '(letters, digits, _ and - only).')
  return '+'.join(subjects)
