"""Shared parts of the face-identity builders (lfw, celeba, vggface2).

IdenNet (../shared/papers/idennet_poster.txt) mixes same-identity face pairs
from a subject-rich identity dataset into every AU batch (au_jax/methods/idennet.py).
These builders store such datasets in the AU record schema
(au_jax/data/records.py) with one split per identity, which is what
`au_jax.methods.idennet.identity_pairs` draws pairs from:
  subject  the dataset's own identity name (folder name or id);
  identity its index in the sorted identity list (0-based);
  sequence the image's file stem; frame_index its number;
  au_occurrence / au_intensity: empty vectors: the datasets have no AU
    labels at all (`aus.DATASET_AUS[name] == ()`), so no AU can be read
    from them by mistake; IdenNet gives identity rows all-unknown (-1) AU
    columns of the AU data's width at mixing time;
  landmarks the 68 points dlib fits at build time (-1 without a face or
  without the `faces` extra), face_found / the crop from the detector as for
  the AU datasets (`frames.FaceBuilderConfig`: crop, aligned, tiny,
  tiny_aligned).

Why not TFDS's catalogue builders (../shared/reference/datasets.md suggests
reusing them): TFDS `celeb_a` has no identity labels (attributes and
landmarks only), `lfw` downloads from a URL and keys records by name in one
split; neither has this record schema nor one split per identity.

Identity datasets hold thousands of small splits; a build worker process
per split would spend more time starting than working, so they build in
this process unless $AU_JAX_BUILD_WORKERS is set (or under Beam).
"""

import collections
import contextlib
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np

from au_jax.preprocess import frames as frames_lib
from au_jax.preprocess import frame_reading

_UNSAFE = re.compile(r'[^A-Za-z0-9_]')


def split_names(subjects: Sequence[str], where: str) -> dict[str, str]:
  """{subject: TFDS split name}: characters other than letters, digits and
  '_' become '_' (a '-' would split TFDS file names); two subjects that map
  to one name are an error naming both."""
  names, owner = {}, {}
  for subject in subjects:
    name = _UNSAFE.sub('_', subject)
    if name in owner:
      raise ValueError(f'{where}: identities {owner[name]!r} and {subject!r} '
                       f'both become split {name!r}; rename one folder.')
    owner[name] = subject
    names[subject] = name
  return names


def identity_example(path: str, *, subject: str, identity: int,
                     frame_index: int, options, encoding: str,
                     counts: collections.Counter) -> dict[str, Any] | None:
  """One record of a face image, or None for a damaged file (counted)."""
  stem = os.path.splitext(os.path.basename(path))[0]
  image = frame_reading.read_frame(path, f'{subject}/{stem}', counts)
  if image is None:
    return None
  return frames_lib.frame_example(
      image, None, np.zeros([0], np.int8), np.zeros([0], np.float32),
      subject=subject, sequence=stem, frame_index=frame_index, view=0,
      identity=identity, options=options, encoding=encoding, counts=counts)


def process_job(job: tuple, options, encoding: str,
                counts: collections.Counter
                ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Job (subject, identity, [(path, frame_index), ...]) -> records."""
  subject, identity, images = job
  for path, frame_index in images:
    example = identity_example(path, subject=subject, identity=identity,
                               frame_index=frame_index, options=options,
                               encoding=encoding, counts=counts)
    if example is not None:
      yield example['sequence'], example


@contextlib.contextmanager
def _in_process_by_default():
  key = 'AU_JAX_BUILD_WORKERS'
  if os.environ.get(key):
    yield
    return
  os.environ[key] = '0'
  try:
    yield
  finally:
    del os.environ[key]


class IdentityBuilder(frames_lib.FaceFramesBuilder, skip_registration=True):
  """FaceFramesBuilder for identity data: no AU set, built in-process by
  default (module docstring)."""

  def _aus(self) -> tuple[int, ...]:
    return ()

  def job_function(self):
    return process_job

  def _split_generators(self, dl_manager):
    # num_workers() is read when the generators are made, not when run.
    with _in_process_by_default():
      return super()._split_generators(dl_manager)
