r"""Builder test for disfa: builds `tiny` from dummy_data/.

tfds.testing.DatasetBuilderTestCase imports TensorFlow, which au_jax does not
need, so this is a plain pytest through `au_jax.prepare.get_builder`. The
record-by-record checks against the label files are in
tests/test_real_builders.py.

  PYTHONPATH=. python -m pytest \
      data_builders/disfa/disfa_dataset_builder_test.py
"""

import os

import numpy as np
import tensorflow_datasets as tfds

from au_jax import aus
from au_jax import prepare

DUMMY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dummy_data')


def test_tiny_builds_one_split_per_subject(tmp_path, monkeypatch):
  monkeypatch.setenv('AU_JAX_BUILD_WORKERS', '0')
  builder = prepare.get_builder('disfa', 'tiny', str(tmp_path))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=DUMMY))
  counts = {name: split.num_examples
            for name, split in builder.info.splits.items()}
  assert counts == {'SN001': 6, 'SN003': 6}
  record = builder.as_data_source(split=sorted(counts)[0])[0]
  assert record['image'].shape == (64, 64, 3)
  num_aus = len(aus.DATASET_AUS['disfa'])
  assert record['au_occurrence'].shape == (num_aus,)
  assert record['landmarks'].shape == (68, 2)
  assert np.isin(record['au_occurrence'], (-1, 0, 1)).all()
