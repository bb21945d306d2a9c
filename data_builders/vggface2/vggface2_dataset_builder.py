"""VGGFace2: 3.31 million web photos of 9,131 people (8,631 train, 500 test).

An identity dataset for IdenNet's face-clustering loss (records and splits:
data_builders/identity_faces.py). Reads the release as its owners ship it
(vggface2_train.tar.gz / vggface2_test.tar.gz), extracted:

  <manual_dir>/train/<n000002>/<NNNN>_<FF>.jpg    (loosely cropped JPEG)
  <manual_dir>/test/<n000001>/<NNNN>_<FF>.jpg

Both partitions are read (their people are disjoint; IdenNet needs
identities, not the recognition benchmark's split); a missing one is logged
and the other read, both missing is an error. One split per class folder
(`n000002`), `subject` the folder name, `identity` its number (2), `sequence`
the file stem (`0001_01`: photo 1, face 1), `frame_index` the image's
position in the folder's sorted file list (1-based). A class folder in both
partitions, a file not named <NNNN>_<FF>.jpg and an empty class folder are
errors naming the path; damaged JPEGs are skipped and named in the build
summary. identity_meta.csv (names, gender) is not read.
"""

import os
import re

from absl import logging

from data_builders import identity_faces

PARTITIONS = ('train', 'test')
_CLASS = re.compile(r'^n(\d{6})$')
_IMAGE = re.compile(r'^\d{4}_\d{2}\.jpg$')


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{split: [(class, identity, [(path, position), ...])]} per class."""
  found = [p for p in PARTITIONS if os.path.isdir(os.path.join(root, p))]
  if not found:
    raise FileNotFoundError(
        f'Missing VGGFace2 image folders: neither {os.path.join(root, "train")}'
        f' nor {os.path.join(root, "test")} exists. Extract '
        'vggface2_train.tar.gz / vggface2_test.tar.gz there.')
  for partition in sorted(set(PARTITIONS) - set(found)):
    logging.warning('VGGFace2: no %s/ folder in %s; reading %s only.',
                    partition, root, found)
  classes = {}
  for partition in found:
    folder = os.path.join(root, partition)
    for name in sorted(os.listdir(folder)):
      path = os.path.join(folder, name)
      if not os.path.isdir(path):
        continue
      if not _CLASS.match(name):
        raise ValueError(f'VGGFace2: class folder {path} is not named '
                         'n<6 digits>.')
      if name in classes:
        raise ValueError(f'VGGFace2: class {name} is in both {classes[name]} '
                         f'and {path}.')
      classes[name] = path
  if not classes:
    raise FileNotFoundError(f'VGGFace2: no class folder in {found} of {root}.')
  jobs = {}
  for name, path in sorted(classes.items()):
    files = sorted(os.listdir(path))
    bad = [f for f in files if not _IMAGE.match(f)]
    if bad:
      raise ValueError(f'VGGFace2: {os.path.join(path, bad[0])} is not named '
                       '<NNNN>_<FF>.jpg.')
    if not files:
      raise FileNotFoundError(f'VGGFace2: class folder {path} has no image.')
    identity = int(_CLASS.match(name).group(1))
    jobs[name] = [(name, identity,
                   [(os.path.join(path, f), i + 1)
                    for i, f in enumerate(files)])]
  return jobs


class Builder(identity_faces.IdentityBuilder):
  """VGGFace2 faces, one split per class, identity labels only."""

  DATASET = 'vggface2'
  HOMEPAGE = 'https://github.com/ox-vgg/vgg_face2'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Obtain vggface2_train.tar.gz and vggface2_test.tar.gz from the dataset's
  owners (see https://github.com/ox-vgg/vgg_face2) and extract both into
  --manual_dir:
    <manual_dir>/train/n000002/0001_01.jpg ...
    <manual_dir>/test/n000001/0001_01.jpg ...
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)
