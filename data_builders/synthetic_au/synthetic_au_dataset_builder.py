"""synthetic_au: rendered faces with known AU labels (see README.md).

Builds without TensorFlow:
  python -m au_jax.prepare synthetic_au --config=default
or from Python: `au_jax.prepare.get_builder('synthetic_au', 'tiny', data_dir)
.download_and_prepare()`. Each subject is one split (S01, S02, ...); records
keep (video, view, frame) order, so neighbouring records are neighbouring
frames.
"""

from typing import Callable, Iterator

import tensorflow_datasets as tfds

from au_jax import aus
from au_jax.data import records
from data_builders.synthetic_au import config as config_lib
from data_builders.synthetic_au import generate


class Builder(tfds.core.GeneratorBasedBuilder):
  """Seeded synthetic AU videos, one split per subject."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release: tiny, default, multiview.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(
          name=c.name,
          description=(f'{c.num_subjects} subjects x {c.videos_per_subject} '
                       f'videos x {c.frames_per_video} frames'
                       + (f' x {c.num_views} views' if c.multiview else '')
                       + f', {c.image_size}x{c.image_size} PNG.'))
      for c in config_lib.CONFIGS]
  DEFAULT_CONFIG_NAME = 'default'

  @property
  def synth_config(self) -> config_lib.SynthConfig:
    return config_lib.get(self.builder_config.name)

  def _info(self) -> tfds.core.DatasetInfo:
    synth = self.synth_config
    return self.dataset_info_from_configs(
        features=records.frame_features(len(aus.SYNTHETIC_AUS),
                                        synth.image_size, 'png'),
        supervised_keys=None,
        # Frame order matters (temporal models, optical flow): keep it.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            aus=list(aus.SYNTHETIC_AUS),
            views=[list(v) for v in config_lib.VIEWS] if synth.multiview
            else [],
            frontal_view=config_lib.FRONTAL_VIEW if synth.multiview else 0),
    )

  def _download_and_prepare(self, dl_manager, download_config):
    # DownloadConfig(beam_runner=...) or beam_options: build with Beam.
    self._use_beam = (download_config.beam_runner is not None or
                      download_config.beam_options is not None)
    return super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # everything is rendered
    synth = self.synth_config
    indices = range(synth.num_subjects)
    if getattr(self, '_use_beam', False):
      beam = tfds.core.lazy_imports.apache_beam
      # One subject per element: a runner renders subjects on its workers.
      return {config_lib.subject_id(i): (
          beam.Create([(synth.name, i)]) | beam.FlatMap(_beam_subject))
              for i in indices}
    rendered = generate.render_subjects(synth, indices)
    done = {}

    def records_of(index: int) -> list[dict]:
      # Subjects arrive in order from the pool; TFDS asks for them split by
      # split, so a cache is only needed if it ever asks out of order.
      while index not in done:
        got, subject_records = next(rendered)
        done[got] = subject_records
      return done.pop(index)

    return {config_lib.subject_id(i): self._generate_examples(records_of, i)
            for i in indices}

  def _generate_examples(self, records_of: Callable[[int], list[dict]],
                         index: int) -> Iterator[tuple[str, dict]]:
    for record in records_of(index):
      record = dict(record)
      yield record.pop('key'), record


def _beam_subject(job: tuple[str, int]) -> Iterator[tuple[int, dict]]:
  """(int key, record) of one subject, for the Beam path.

  The records are `generate.render_subject`'s, as on the local path; the
  key is the record's position in the subject: TFDS's BeamWriter sorts a
  disable_shuffling split by key and needs ints (au_jax.preprocess.frames
  KEY_BITS), so the local string keys (whose sort order would also put
  video T10 before T2) are dropped.
  """
  name, index = job
  for position, record in enumerate(
      generate.render_subject(config_lib.get(name), index)):
    record = dict(record)
    del record['key']
    yield position, record
