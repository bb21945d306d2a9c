r"""Writes lfw/dummy_data/: a miniature LFW release in the real layout.

  PYTHONPATH=. python data_builders/lfw/make_dummy_data.py

Made-up people (not LFW's); images are the BP4D dummy data's face photo
(matplotlib's grace_hopper.jpg) at 250x250 like LFW's, shifted per image.
PEOPLE is what tests/test_identity_builders.py checks the records against.
"""

import os

import cv2

from data_builders.bp4d import make_dummy_data as photos

HERE = os.path.dirname(os.path.abspath(__file__))

# Person folder -> image numbers. 'Jean-Luc_Sample' has a hyphen (split
# 'Jean_Luc_Sample'); 'Solo_Person' one photo (forms no pair); Ada's
# numbers skip 0002 as real LFW numbering never does, to show numbers are
# read, not counted.
PEOPLE = {
    'Ada_Example': (1, 3),
    'Jean-Luc_Sample': (1, 2, 3),
    'Solo_Person': (1,),
}


def main() -> None:
  root = os.path.join(HERE, 'dummy_data', 'lfw')
  for person, numbers in PEOPLE.items():
    os.makedirs(os.path.join(root, person), exist_ok=True)
    for number in numbers:
      frame, _ = photos.face_frame(250, 250, shift=(3 * number, -2 * number),
                                   scale=0.35)
      cv2.imwrite(os.path.join(root, person, f'{person}_{number:04d}.jpg'),
                  frame, [cv2.IMWRITE_JPEG_QUALITY, 70])


if __name__ == '__main__':
  main()
