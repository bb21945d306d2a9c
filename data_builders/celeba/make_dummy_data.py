r"""Writes celeba/dummy_data/: a miniature CelebA in the owners' layout.

  PYTHONPATH=. python data_builders/celeba/make_dummy_data.py

Images are the BP4D dummy data's face photo at CelebA's aligned size
(178 wide, 218 high); the identity file uses the owners' Anno/ folder and
lists all but 000006.jpg (an unlisted image: counted, not read). IDENTITIES
is what tests/test_identity_builders.py checks the records against.
"""

import os

import cv2

from data_builders.bp4d import make_dummy_data as photos

HERE = os.path.dirname(os.path.abspath(__file__))

# Image number -> CelebA identity (listed out of identity order, as the
# real file is).
IDENTITIES = {1: 2880, 2: 2937, 3: 8692, 4: 2880, 5: 2937}
UNLISTED = 6


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  images = os.path.join(root, 'img_align_celeba')
  os.makedirs(images, exist_ok=True)
  os.makedirs(os.path.join(root, 'Anno'), exist_ok=True)
  for number in list(IDENTITIES) + [UNLISTED]:
    frame, _ = photos.face_frame(178, 218, shift=(2 * number, -number),
                                 scale=0.3)
    cv2.imwrite(os.path.join(images, f'{number:06d}.jpg'), frame,
                [cv2.IMWRITE_JPEG_QUALITY, 70])
  with open(os.path.join(root, 'Anno', 'identity_CelebA.txt'), 'w') as f:
    f.write(''.join(f'{n:06d}.jpg {i}\n' for n, i in IDENTITIES.items()))


if __name__ == '__main__':
  main()
