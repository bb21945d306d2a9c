"""Helpers shared by the builder tests: build a dataset from a manual
folder (dummy data by default) and read every record back."""

import os

import tensorflow_datasets as tfds

from au_jax import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dummy_dir(name: str) -> str:
  return os.path.join(ROOT, 'data_builders', name, 'dummy_data')


def build(name, config, data_dir, manual_dir=None, workers='0'):
  """Builds `name`/`config` with AU_JAX_BUILD_WORKERS=`workers` (None: the
  builder's default), restoring the environment afterwards."""
  old = os.environ.get('AU_JAX_BUILD_WORKERS')
  if workers is not None:
    os.environ['AU_JAX_BUILD_WORKERS'] = workers
  try:
    builder = prepare.get_builder(name, config, data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir or dummy_dir(name)))
  finally:
    if old is None:
      os.environ.pop('AU_JAX_BUILD_WORKERS', None)
    else:
      os.environ['AU_JAX_BUILD_WORKERS'] = old
  return builder


def records(builder) -> dict[str, list[dict]]:
  """{split: [record, ...]} in stored order."""
  out = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split=split)
    out[split] = [source[i] for i in range(len(source))]
  return out
