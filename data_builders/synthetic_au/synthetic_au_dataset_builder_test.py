r"""Builder test for synthetic_au (`tiny` config).

tfds.testing.DatasetBuilderTestCase imports TensorFlow, which au_jax does not
need, so this is a plain pytest that builds `tiny` (no dummy data: the
builder renders its own) through `au_jax.prepare.get_builder` into a temporary
folder and checks the splits.

  PYTHONPATH=. python -m pytest \
      data_builders/synthetic_au/synthetic_au_dataset_builder_test.py
"""

import numpy as np

from au_jax import aus
from au_jax import prepare


def test_tiny_builds_one_split_per_subject(tmp_path):
  builder = prepare.get_builder('synthetic_au', 'tiny', str(tmp_path))
  builder.download_and_prepare()
  splits = builder.info.splits
  assert sorted(splits) == ['S01', 'S02', 'S03', 'S04', 'S05', 'S06']
  assert all(split.num_examples == 16 for split in splits.values())
  source = builder.as_data_source(split='S03+S04')
  assert len(source) == 32
  record = source[20]
  assert record['subject'] == b'S04' and record['identity'] == 3
  assert record['image'].shape == (64, 64, 3)
  assert record['au_occurrence'].shape == (len(aus.SYNTHETIC_AUS),)
  assert np.all(record['landmarks'] >= 0)
