r"""Writes vggface2/dummy_data/: a miniature VGGFace2 in the owners' layout.

  PYTHONPATH=. python data_builders/vggface2/make_dummy_data.py

Images are the BP4D dummy data's face photo in loosely cropped frames of
varied size, as VGGFace2's are. CLASSES is what
tests/test_identity_builders.py checks the records against.
"""

import os

import cv2

from data_builders.bp4d import make_dummy_data as photos

HERE = os.path.dirname(os.path.abspath(__file__))

# (partition, class) -> file stems (photo_face), in sorted order.
CLASSES = {
    ('train', 'n000002'): ('0001_01', '0002_01', '0002_02'),
    ('train', 'n000017'): ('0005_01',),
    ('test', 'n000001'): ('0001_01', '0003_01'),
}


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  for (partition, name), stems in CLASSES.items():
    folder = os.path.join(root, partition, name)
    os.makedirs(folder, exist_ok=True)
    for i, stem in enumerate(stems):
      frame, _ = photos.face_frame(120 + 10 * i, 140 + 6 * i,
                                   shift=(i, -i), scale=0.3)
      cv2.imwrite(os.path.join(folder, f'{stem}.jpg'), frame,
                  [cv2.IMWRITE_JPEG_QUALITY, 70])


if __name__ == '__main__':
  main()
