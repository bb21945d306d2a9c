r"""Writes rafd/dummy_data/: a miniature RaFD download in the real format.

  PYTHONPATH=. python data_builders/rafd/make_dummy_data.py

Pictures are the BP4D dummy data's face photo (matplotlib's
grace_hopper.jpg) at 96x144 (RaFD's are 681x1024, portrait), named as RaFD
names its files; model 28's sit in a sub-folder. PICTURES is what
tests/test_emotion_builders.py checks the records against.
"""

import os

import cv2

from data_builders.bp4d import make_dummy_data as photos

HERE = os.path.dirname(os.path.abspath(__file__))

# (sub-folder, file name): models 01 and 28; views 090 (frontal), 045, 180.
PICTURES = (
    ('', 'Rafd090_01_Caucasian_female_happy_frontal.jpg'),
    ('', 'Rafd090_01_Caucasian_female_contemptuous_left.jpg'),
    ('', 'Rafd045_01_Caucasian_female_sad_right.jpg'),
    ('', 'Rafd180_01_Caucasian_female_neutral_frontal.jpg'),
    ('models_21-40', 'Rafd090_28_Moroccan_male_angry_frontal.jpg'),
    ('models_21-40', 'Rafd090_28_Moroccan_male_surprised_frontal.jpg'),
)


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  for index, (folder, name) in enumerate(PICTURES):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    frame, _ = photos.face_frame(96, 144, shift=(index % 3 - 1, 0),
                                 scale=0.3)
    cv2.imwrite(os.path.join(root, folder, name), frame,
                [cv2.IMWRITE_JPEG_QUALITY, 80])


if __name__ == '__main__':
  main()
