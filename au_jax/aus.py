"""AU catalogue: FACS numbers, names, face regions and each dataset's AU set.

AU ids are FACS integers everywhere in au_jax. A model's output order is its
config's `aus` tuple; a dataset's label order is its AU set below (FACS order).
"""

from typing import Sequence

import numpy as np

# FACS number -> (name, face region). Regions follow ../shared/reference/facs.md.
CATALOGUE = {
    1: ('inner brow raiser', 'brow'),
    2: ('outer brow raiser', 'brow'),
    4: ('brow lowerer', 'brow'),
    5: ('upper lid raiser', 'eye'),
    6: ('cheek raiser', 'eye'),
    7: ('lid tightener', 'eye'),
    9: ('nose wrinkler', 'nose'),
    10: ('upper lip raiser', 'mouth'),
    12: ('lip corner puller', 'mouth'),
    14: ('dimpler', 'mouth'),
    15: ('lip corner depressor', 'mouth'),
    16: ('lower lip depressor', 'mouth'),
    17: ('chin raiser', 'chin'),
    20: ('lip stretcher', 'mouth'),
    23: ('lip tightener', 'mouth'),
    24: ('lip pressor', 'mouth'),
    25: ('lips part', 'mouth'),
    26: ('jaw drop', 'chin'),
    43: ('eyes closed', 'eye'),
}

BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
DISFA_AUS = (1, 2, 4, 6, 9, 12, 25, 26)
# DISFA's label files cover 12 AUs; the benchmark uses the 8 above.
DISFA_LABELLED_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
UNBC_AUS = (4, 6, 7, 9, 10, 12, 20, 25, 26, 43)
FERA2017_AUS = (1, 4, 6, 7, 10, 12, 14, 15, 17, 23)
# The union of BP4D's 12 and DISFA's 8 AUs, in FACS order.
SYNTHETIC_AUS = tuple(sorted(set(BP4D_AUS) | set(DISFA_AUS)))

# CK+ (emotion pretraining; data_builders/ck_plus): the catalogue's AUs.
CK_PLUS_AUS = tuple(sorted(CATALOGUE))

# The AUs each dataset's records carry, in record (FACS) order.
DATASET_AUS = {
    'synthetic_au': SYNTHETIC_AUS,
    'bp4d': BP4D_AUS,
    'disfa': DISFA_LABELLED_AUS,
    'unbc_mcmaster': UNBC_AUS,
    'fera2017': FERA2017_AUS,
    # CK+ peak frames are fully FACS coded: every catalogued AU.
    'ck_plus': CK_PLUS_AUS,
    # RaFD (data_builders/rafd): emotions and camera views, no AU labels.
    'rafd': (),
    # Face-identity sets (IdenNet's pair stream; data_builders/
    # identity_faces.py): no AU labels at all.
    'lfw': (),
    'celeba': (),
    'vggface2': (),
}

# The 8-way emotion set of the CAUD thesis; records store the index, -1 unknown.
EMOTIONS = ('neutral', 'happy', 'sad', 'anger', 'fear', 'disgust', 'surprise',
            'contempt')


def au_name(au: int) -> str:
  """'AU12 lip corner puller'."""
  check_aus([au])
  return f'AU{au} {CATALOGUE[au][0]}'


def check_aus(aus: Sequence[int], available: Sequence[int] | None = None,
              where: str = 'config.aus') -> tuple[int, ...]:
  """Returns `aus` as a tuple of ints, or raises naming the bad AU id."""
  aus = tuple(int(a) for a in aus)
  if not aus:
    raise ValueError(f'{where} is empty: name at least one FACS AU number.')
  if len(set(aus)) != len(aus):
    raise ValueError(f'{where} repeats an AU: {aus}.')
  for au in aus:
    if au not in CATALOGUE:
      raise ValueError(
          f'{where}: unknown AU id {au}; known FACS AUs: {sorted(CATALOGUE)}.')
    if available is not None and au not in available:
      raise ValueError(
          f'{where}: AU {au} is not labelled in this dataset; it has AUs '
          f'{tuple(available)}.')
  return aus


def dataset_aus(dataset: str) -> tuple[int, ...]:
  try:
    return DATASET_AUS[dataset]
  except KeyError:
    raise ValueError(f'Unknown dataset {dataset!r}; au_jax knows '
                     f'{sorted(DATASET_AUS)}.') from None


def label_indices(dataset: str, aus: Sequence[int]) -> np.ndarray:
  """Column of each AU of `aus` in `dataset`'s record label vector."""
  available = dataset_aus(dataset)
  aus = check_aus(aus, available, where=f'config.aus for {dataset}')
  return np.array([available.index(a) for a in aus], np.int32)
