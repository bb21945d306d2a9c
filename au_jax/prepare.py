r"""Builds any au_jax dataset without TensorFlow.

  python -m au_jax.prepare synthetic_au --config=default
  python -m au_jax.prepare bp4d --manual_dir=/data/BP4D --config=crop

Each dataset is a TFDS builder in `data_builders/<name>/` (`tfds new` layout);
where TensorFlow is installed, `tfds build data_builders/<name>` works too.
Records are written as `array_record` (random access for grain), one split per
subject.

A build holds `<data_dir>/.<dataset>.build.lock` (`fcntl.flock`, released by
the kernel even when the process is killed): a second build of the same
dataset into the same data_dir waits for the first, then finds it built. A
process that the holder itself started (a worker that re-ran the caller's
script) gets a `BuildLockError` at once instead: waiting would never end.
Holding the lock, a build removes the scratch a killed earlier build left
(`.<dataset>_frames_*` worker folders, TFDS `incomplete.*` folders) and says
so in one log line; a failed or interrupted build removes its own.
"""

import contextlib
import fcntl
import glob
import importlib
import os
import shutil
import socket
import time
from typing import Any, Iterator

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

import au_jax

DEFAULT_DATA_DIR = os.path.expanduser(
    os.environ.get('AU_JAX_DATA_DIR', '~/tensorflow_datasets'))


def data_dir_or_default(data_dir: str | None) -> str:
  return os.path.abspath(os.path.expanduser(data_dir or DEFAULT_DATA_DIR))


def builder_class(name: str) -> type[tfds.core.DatasetBuilder]:
  """The `Builder` class of `data_builders/<name>/`."""
  module_name = f'data_builders.{name}.{name}_dataset_builder'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name and (e.name == module_name or module_name.startswith(e.name)):
      known = sorted(
          d for d in os.listdir(os.path.dirname(
              importlib.import_module('data_builders').__file__))
          if not d.startswith(('_', '.')))
      raise ValueError(f'Unknown dataset {name!r}: no builder '
                       f'data_builders/{name}/. Known: {known}.') from None
    raise
  return module.Builder


def get_builder(name: str, config: str | None = None,
                data_dir: str | None = None,
                **kwargs: Any) -> tfds.core.DatasetBuilder:
  """A builder instance writing/reading array_record under `data_dir`."""
  cls = builder_class(name)
  if config is not None:
    names = [c.name for c in (cls.BUILDER_CONFIGS or [])]
    if config not in names:
      raise ValueError(f'Dataset {name!r} has no config {config!r}; '
                       f'its configs are {names}.')
  return cls(config=config, data_dir=data_dir_or_default(data_dir),
             file_format='array_record', **kwargs)


def prepare(name: str, config: str | None = None, data_dir: str | None = None,
            manual_dir: str | None = None, beam_runner: Any = None,
            force: bool = False, beam_options: Any = None
            ) -> tfds.core.DatasetBuilder:
  """Builds dataset `name` (config `config`) if it is not built yet.

  A `beam_runner` or `beam_options` (apache_beam PipelineOptions, e.g. from
  `beam_pipeline_options`) builds it as an Apache Beam pipeline (the `beam`
  extra; README "Scaling out").
  """
  builder = get_builder(name, config, data_dir)
  if not force and _has_dataset_info(builder):
    logging.info('%s already built at %s', builder.info.full_name,
                 builder.data_dir)
    return builder
  root = data_dir_or_default(data_dir)
  with build_lock(root, name):
    if not force and _has_dataset_info(builder):  # Built while we waited:
      return get_builder(name, config, data_dir)  # read its fresh info.
    remove_stale_scratch(root, name)
    return _build(builder, manual_dir, beam_runner, force, beam_options)


class BuildLockError(RuntimeError):
  """The build lock is held by this process's own parent."""


@contextlib.contextmanager
def build_lock(data_dir: str, name: str) -> Iterator[None]:
  """Holds the build lock of dataset `name` in `data_dir` (waits for it).

  The lock file records the holder's pid and host for the waiting message;
  the kernel drops the lock when the holder exits or is killed, so a dead
  build never blocks the next one.

  Raises:
    BuildLockError: the holder is this process's parent, which waits for
      this process: waiting for the lock would never end.
  """
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, f'.{name}.build.lock')
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      owner = f.read().strip() or 'an unknown process'
      if owner == _lock_owner(os.getppid()):
        raise BuildLockError(
            f'{name}: this process (pid {os.getpid()}) was started by the '
            f'build of {name} into {data_dir} ({owner}, its parent) and would '
            f'wait for that build\'s lock {path} forever. A worker process '
            'ran the script that started the build again: start workers '
            'that do not re-run the main module (au_jax.spawn_without_main)'
            ', put the build under `if __name__ == "__main__":`, or build in '
            'one process (AU_JAX_BUILD_WORKERS=0, AU_JAX_SYNTH_WORKERS=0).')
      logging.warning('Waiting for the build of %s into %s by %s to finish '
                      '(lock %s).', name, data_dir, owner, path)
      fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    f.truncate()
    f.write(_lock_owner(os.getpid()) + '\n')
    f.flush()
    try:
      yield
    finally:
      f.seek(0)
      f.truncate()
      fcntl.flock(f, fcntl.LOCK_UN)


def _lock_owner(pid: int) -> str:
  return f'pid {pid} on {socket.gethostname()}'


def stale_scratch(data_dir: str, name: str) -> list[str]:
  """Scratch folders an interrupted build of `name` can leave in data_dir:
  its worker folders and TFDS `incomplete.*` folders (any config)."""
  patterns = [os.path.join(data_dir, f'.{name}_frames_*'),
              os.path.join(data_dir, name, 'incomplete.*'),
              os.path.join(data_dir, name, '*', 'incomplete.*')]
  return sorted(p for pattern in patterns for p in glob.glob(pattern)
                if os.path.isdir(p))


def remove_stale_scratch(data_dir: str, name: str) -> list[str]:
  """Removes `stale_scratch` (call it holding `build_lock`); returns it."""
  found = stale_scratch(data_dir, name)
  for path in found:
    shutil.rmtree(path, ignore_errors=True)
  if found:
    logging.warning('Removed %d stale scratch folder(s) of an interrupted '
                    'earlier %s build: %s', len(found), name,
                    ', '.join(found))
  return found


def beam_pipeline_options(text: str) -> Any:
  """PipelineOptions from 'runner=FlinkRunner,flink_master=host:8081,...'.

  The format of `tfds build --beam_pipeline_options`: comma-separated
  `name=value` Beam options, given without their leading '--'.
  """
  try:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'--beam_pipeline_options={text!r} needs apache-beam, an optional '
        'extra: pip install -e ".[beam]" (or "au_jax[beam]").') from e
  return beam.options.pipeline_options.PipelineOptions(
      flags=[f'--{option}' for option in text.split(',') if option])


def _build(builder: tfds.core.DatasetBuilder, manual_dir: str | None,
           beam_runner: Any, force: bool,
           beam_options: Any = None) -> tfds.core.DatasetBuilder:
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.abspath(os.path.expanduser(manual_dir))
      if manual_dir else None,
      beam_runner=beam_runner,
      beam_options=beam_options,
      download_mode=(tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
                     if force else
                     tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  start = time.time()
  logging.info('Building %s into %s', builder.info.full_name, builder.data_dir)
  # Build workers run library code: they need not re-run the caller's
  # script, which may have no main guard (au_jax.spawn_without_main).
  with au_jax.spawn_without_main():
    builder.download_and_prepare(download_config=download_config)
  seconds = time.time() - start
  total = sum(s.num_examples for s in builder.info.splits.values())
  print(f'Built {builder.info.full_name}: {total} frames in '
        f'{len(builder.info.splits)} subject splits, {seconds:.1f} s '
        f'({total / max(seconds, 1e-9):.1f} frames/s) at {builder.data_dir}')
  return builder


def _has_dataset_info(builder: tfds.core.DatasetBuilder) -> bool:
  return os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))


def ensure_built(name: str, config: str | None, data_dir: str | None,
                 manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The built dataset, building it first where that needs no manual files.

  Raises a ValueError naming the dataset, its data_dir and the command to run
  when the dataset is not built and needs a manual download.
  """
  builder = get_builder(name, config, data_dir)
  if _has_dataset_info(builder):
    return builder
  needs_manual = bool(getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None))
  if needs_manual and not manual_dir:
    raise ValueError(
        f'Dataset {name}/{config} is not built under {builder.data_dir} and '
        'cannot be built without its licensed files. Build it with:\n  '
        f'python -m au_jax.prepare {name} --config={config} '
        f'--data_dir={data_dir_or_default(data_dir)} '
        '--manual_dir=<your download>')
  return prepare(name, config, data_dir, manual_dir)


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(
        'usage: python -m au_jax.prepare <dataset> [--config=NAME] '
        '[--data_dir=DIR] [--manual_dir=DIR] [--force] '
        '[--beam_pipeline_options=runner=NAME,...]')
  prepare(argv[1], FLAGS.config, FLAGS.data_dir, FLAGS.manual_dir,
          force=FLAGS.force,
          beam_options=(beam_pipeline_options(FLAGS.beam_pipeline_options)
                        if FLAGS.beam_pipeline_options else None))


if __name__ == '__main__':
  flags.DEFINE_string('config', None, 'Builder config name (e.g. tiny, '
                      'default, multiview for synthetic_au).')
  flags.DEFINE_string('data_dir', None,
                      f'Where records go (default {DEFAULT_DATA_DIR}, or '
                      '$AU_JAX_DATA_DIR).')
  flags.DEFINE_string('manual_dir', None,
                      'Folder holding the dataset as its owners ship it.')
  flags.DEFINE_bool('force', False, 'Rebuild even if already built.')
  flags.DEFINE_string(
      'beam_pipeline_options', None,
      'Build with Apache Beam (the beam extra): comma-separated Beam options '
      'without "--", as for `tfds build`, e.g. runner=DirectRunner or '
      'runner=FlinkRunner,flink_master=HOST:8081,environment_type=LOOPBACK.'),
  app.run(main)
