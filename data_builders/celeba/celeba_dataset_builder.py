"""CelebA identities: 202,599 aligned celebrity photos of 10,177 people.

An identity dataset for IdenNet's face-clustering loss (records and splits:
data_builders/identity_faces.py); the IdenNet poster's identity data. Reads
the release as its owners ship it (the "Align&Cropped Images" zip and the
identity annotation), extracted:

  <manual_dir>/img_align_celeba/<NNNNNN>.jpg      (178x218 JPEG)
  <manual_dir>/identity_CelebA.txt                 '<NNNNNN>.jpg <id>' lines
  (also found as Img/img_align_celeba/ and Anno/identity_CelebA.txt, the
  folders of the owners' download)

One split per identity, `id<id:05d>` ('id02880'); `subject` is the CelebA
identity number as text and `identity` that number (1-10,177); records in
image-number order, `frame_index` the image number. An image the identity
file lists but the folder lacks, and a malformed line (its number given),
are errors; images the file does not list are not read, counted and named
in the build summary. The attribute, landmark and partition files are not
read (the identity stream needs none of them).
"""

import collections
import os

from data_builders import identity_faces
from au_jax.preprocess import frame_reading

IMAGE_FOLDERS = ('img_align_celeba', os.path.join('Img', 'img_align_celeba'))
IDENTITY_FILES = ('identity_CelebA.txt',
                  os.path.join('Anno', 'identity_CelebA.txt'))


def _first(root: str, candidates, what: str) -> str:
  for candidate in candidates:
    if os.path.exists(os.path.join(root, candidate)):
      return os.path.join(root, candidate)
  raise FileNotFoundError(
      f'Missing CelebA {what}: none of '
      f'{[os.path.join(root, c) for c in candidates]} exists.')


def read_identities(path: str) -> dict[str, int]:
  """{image file name: identity} of identity_CelebA.txt."""
  identities = {}
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      parts = line.split()
      if len(parts) != 2 or not parts[1].isdigit():
        raise ValueError(f'{path} line {number}: expected "<image>.jpg <id>",'
                         f' got {line.strip()!r}.')
      if parts[0] in identities:
        raise ValueError(f'{path} line {number}: {parts[0]} is listed twice.')
      identities[parts[0]] = int(parts[1])
  if not identities:
    raise ValueError(f'{path} lists no image.')
  return identities


def list_jobs(root: str, counts: collections.Counter | None = None
              ) -> dict[str, list[tuple]]:
  """{split: [(subject, identity, [(path, number), ...])]} per identity."""
  folder = _first(root, IMAGE_FOLDERS, 'image folder')
  identities = read_identities(_first(root, IDENTITY_FILES, 'identity file'))
  present = set(os.listdir(folder))
  by_identity = collections.defaultdict(list)
  for name, identity in identities.items():
    if name not in present:
      raise FileNotFoundError(
          f'CelebA: {os.path.join(folder, name)} is listed in the identity '
          'file but missing from the image folder (incomplete extraction?).')
    stem = os.path.splitext(name)[0]
    if not stem.isdigit():
      raise ValueError(f'CelebA: image {name} is not named <number>.jpg.')
    by_identity[identity].append((os.path.join(folder, name), int(stem)))
  unlisted = sorted(n for n in present - set(identities)
                    if n.lower().endswith('.jpg'))
  if unlisted and counts is not None:
    counts['skipped_unlisted_image'] += len(unlisted)
    frame_reading.name_problem(
        counts, f'{len(unlisted)} images of {folder} are not in the identity '
        f'file and were not read (first: {unlisted[0]})')
  return {f'id{identity:05d}': [(str(identity), identity,
                                 sorted(images, key=lambda x: x[1]))]
          for identity, images in sorted(by_identity.items())}


class Builder(identity_faces.IdentityBuilder):
  """CelebA aligned faces, one split per identity, identity labels only."""

  DATASET = 'celeba'
  HOMEPAGE = 'https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  From the CelebA homepage (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)
  download img_align_celeba.zip and Anno/identity_CelebA.txt (the identity
  file is distributed on request by the owners) and place them as:
    <manual_dir>/img_align_celeba/000001.jpg ...
    <manual_dir>/identity_CelebA.txt
  (the owners' Img/ and Anno/ sub-folders also work).
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir, self.listing_counts)
