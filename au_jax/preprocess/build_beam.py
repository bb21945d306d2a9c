"""The Apache Beam path of a real-dataset build: one pipeline per split.

`beam_split` is used when the caller passes `DownloadConfig(beam_runner=...)`
or `beam_options` (apache-beam is optional: `pip install -e ".[beam]"`; it
is imported only then), so the big sets can build on a cluster (Dataflow,
Spark, Flink). Its records equal the local paths' (build_runners.py) record
for record (tests/test_beam_builds.py). The build counts and AU base rates
are Beam metric counters `au_jax/<name>` (shown by the runner's UI), and
`summary_from_counters` rebuilds the local build summary (`BuildStats`)
from them once the pipeline has finished.
"""

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from au_jax.preprocess import face as face_lib
from au_jax.preprocess.build_runners import BuildStats
from au_jax.preprocess.build_runners import ProcessFn
from au_jax.preprocess.frame_reading import check_damaged
from au_jax.preprocess.frame_reading import max_damaged_fraction


# Beam keys: (job index << KEY_BITS) | frame position within the job. TFDS's
# BeamWriter sorts a disable_shuffling split by key and shards it with
# `key * num_shards / largest_key`, so the keys must be non-negative ints in
# output order (the in-process path's string keys raise a TypeError there).
KEY_BITS = 32
BEAM_NAMESPACE = 'au_jax'
_COUNTS_TAG = 'counts'
_POSITIVE, _LABELLED = 'positive_AU', 'labelled_AU'


def beam_key(job_index: int, position: int) -> int:
  """The int key of frame `position` of job `job_index` (see KEY_BITS)."""
  if not 0 <= position < 1 << KEY_BITS:
    raise ValueError(f'Frame position {position} of job {job_index} does '
                     f'not fit in {KEY_BITS} bits.')
  return (job_index << KEY_BITS) | position


def beam_split(name: str, split: str, jobs: Sequence[Any],
               process_job: ProcessFn, options: face_lib.FaceOptions,
               encoding: str, aus: Sequence[int]) -> Any:
  """A Beam PTransform (pipeline -> (int key, example)) for one split.

  One job per element, so a runner spreads a subject's sequences (or a
  split's videos) over its workers. Each job also emits its counts and AU
  tallies on a side output, summed per split by a final step that applies
  the same per-subject damaged-frame limit as the local paths (raising
  there fails the pipeline, so nothing is written) and publishes them as
  Beam counters `au_jax/<name>` (`summary_from_counters` turns them back
  into the local build summary).
  """
  beam = tfds.core.lazy_imports.apache_beam
  # Read here: a cluster's workers do not see the launcher's environment.
  limit = max_damaged_fraction()

  def expand(pipeline):
    processed = (
        pipeline
        | 'Create' >> beam.Create(list(enumerate(jobs)))
        | 'Process' >> beam.FlatMap(
            _beam_process, process_job, options, encoding, len(aus)
        ).with_outputs(_COUNTS_TAG, main='examples'))
    _ = (processed[_COUNTS_TAG]
         | 'SumCounts' >> beam.CombineGlobally(_sum_tallies)
         | 'CheckCounts' >> beam.Map(_beam_split_done, name, split,
                                     tuple(aus), limit))
    return processed.examples

  return beam.ptransform_fn(expand)()


def _beam_process(indexed_job, process_job, options, encoding, num_aus):
  """One job's (int key, example)s, then its tallies on the counts output."""
  beam = tfds.core.lazy_imports.apache_beam
  job_index, job = indexed_job
  counts = collections.Counter()
  positive = np.zeros(num_aus, np.int64)
  labelled = np.zeros(num_aus, np.int64)
  position = 0
  for _, example in process_job(job, options, encoding, counts):
    occurrence = example['au_occurrence']
    positive += occurrence == 1
    labelled += occurrence >= 0
    yield beam_key(job_index, position), example
    position += 1
  yield beam.pvalue.TaggedOutput(_COUNTS_TAG, (counts, positive, labelled))


def _sum_tallies(tallies):
  counts, positive, labelled = collections.Counter(), 0, 0
  for c, p, n in tallies:
    counts.update(c)
    positive, labelled = positive + p, labelled + n
  return counts, positive, labelled


def _beam_split_done(tallies, name, split, aus, limit):
  beam = tfds.core.lazy_imports.apache_beam
  counts, positive, labelled = tallies
  check_damaged(name, split, counts, limit)
  metric = beam.metrics.Metrics.counter
  for key, value in counts.items():
    if value:
      metric(BEAM_NAMESPACE, key).inc(value)
  for au, p, n in zip(aus, np.broadcast_to(positive, len(aus)),
                      np.broadcast_to(labelled, len(aus))):
    metric(BEAM_NAMESPACE, f'{_POSITIVE}{au}').inc(int(p))
    metric(BEAM_NAMESPACE, f'{_LABELLED}{au}').inc(int(n))


def summary_from_counters(name: str, aus: Sequence[int], pipeline_result: Any,
                          listing_counts: collections.Counter | None = None
                          ) -> str:
  """The local build summary, from a finished pipeline's au_jax counters."""
  beam = tfds.core.lazy_imports.apache_beam
  query = pipeline_result.metrics().query(
      beam.metrics.MetricsFilter().with_namespace(BEAM_NAMESPACE))
  totals = collections.Counter(listing_counts or {})
  for result in query['counters']:
    value = result.committed
    if value is None:  # Runners without committed metrics.
      value = result.attempted
    totals[result.key.metric.name] += int(value or 0)
  stats = BuildStats(name, aus, 1)
  for i, au in enumerate(stats.aus):
    stats.positive[i] = totals.pop(f'{_POSITIVE}{au}', 0)
    stats.labelled[i] = totals.pop(f'{_LABELLED}{au}', 0)
  stats.counts.update(totals)
  return stats.summary()
