"""Labeled Faces in the Wild (LFW): 13,233 web photos of 5,749 people.

An identity dataset for IdenNet's face-clustering loss (records and splits:
data_builders/identity_faces.py). Reads the archive as its owners ship it
(lfw.tgz, or the funneled / deep-funneled variants), extracted:

  <manual_dir>/lfw/<Person_Name>/<Person_Name>_<NNNN>.jpg   (250x250 JPEG)
  (or lfw-deepfunneled/ or lfw_funneled/ in place of lfw/)

One split per person (the folder name with '-' and other non-word
characters as '_': 'Jean-Luc_X' -> split 'Jean_Luc_X'; `subject` keeps the
folder name); records in image-number order. 4,069 people have a single
photo: they are stored, and `mixing.identity_pairs` leaves them out
(counted) since they form no pair. A file in a person folder that is not
<Person_Name>_<NNNN>.jpg is an error naming it; a damaged JPEG is skipped,
counted and named in the build summary.
"""

import os
import re

from data_builders import identity_faces

FOLDERS = ('lfw', 'lfw-deepfunneled', 'lfw_funneled')


def image_folder(root: str) -> str:
  """The extracted image folder under `root` (first of FOLDERS found)."""
  for name in FOLDERS:
    if os.path.isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  raise FileNotFoundError(
      f'Missing LFW image folder: none of {list(FOLDERS)} is in {root}. '
      'Extract lfw.tgz (or lfw-deepfunneled.tgz) there.')


def list_jobs(root: str) -> dict[str, list[tuple]]:
  """{split: [(person, identity, [(path, number), ...])]}, one per person."""
  folder = image_folder(root)
  people = sorted(p for p in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, p)))
  if not people:
    raise FileNotFoundError(f'No person folders in {folder}.')
  splits = identity_faces.split_names(people, f'LFW ({folder})')
  jobs = {}
  for identity, person in enumerate(people):
    pattern = re.compile(re.escape(person) + r'_(\d{4})\.jpg$')
    images = []
    for entry in sorted(os.listdir(os.path.join(folder, person))):
      match = pattern.match(entry)
      if not match:
        raise ValueError(
            f'LFW: {os.path.join(folder, person, entry)} is not named '
            f'{person}_<NNNN>.jpg like the other images of that person.')
      images.append((os.path.join(folder, person, entry),
                     int(match.group(1))))
    if not images:
      raise FileNotFoundError(
          f'LFW: person folder {os.path.join(folder, person)} has no image.')
    jobs[splits[person]] = [(person, identity, sorted(images,
                                                      key=lambda x: x[1]))]
  return jobs


class Builder(identity_faces.IdentityBuilder):
  """LFW faces, one split per person, identity labels only."""

  DATASET = 'lfw'
  HOMEPAGE = 'http://vis-www.cs.umass.edu/lfw/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download lfw.tgz (or lfw-deepfunneled.tgz) from the LFW homepage
  (http://vis-www.cs.umass.edu/lfw/) and extract it into --manual_dir:
    <manual_dir>/lfw/<Person_Name>/<Person_Name>_<NNNN>.jpg
  (lfw-deepfunneled/ or lfw_funneled/ instead of lfw/ also work).
  """

  def jobs(self, manual_dir: str) -> dict[str, list[tuple]]:
    return list_jobs(manual_dir)

