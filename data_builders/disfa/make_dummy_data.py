r"""Writes disfa/dummy_data/: a miniature DISFA release in the real format.

  PYTHONPATH=. python data_builders/disfa/make_dummy_data.py

SN001: a 6-frame left-camera video (frame 4 blank), 6 label lines per AU,
66-point .mat landmarks for frames 1-3 and 5. SN003: a 6-frame video but 5
label lines (frame 6 unlabelled) and a 4-line AU26 file; no landmarks.
"""

import os

import cv2
import numpy as np
import scipy.io

from data_builders.bp4d import make_dummy_data as faces

HERE = os.path.dirname(os.path.abspath(__file__))
AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
SIZE = (128, 112)  # Video width, height.


def intensity(subject_index: int, line: int, au_index: int) -> int:
  """A deterministic 0-5 pattern that hits both sides of the >= 2 rule."""
  return (3 * line + 5 * au_index + subject_index) % 6


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  os.makedirs(os.path.join(root, 'Video_LeftCamera'), exist_ok=True)
  for s, (subject, lines) in enumerate((('SN001', 6), ('SN003', 5))):
    writer = cv2.VideoWriter(
        os.path.join(root, 'Video_LeftCamera', f'LeftVideo{subject}_comp.avi'),
        cv2.VideoWriter_fourcc(*'XVID'), 20, SIZE)
    landmark_folder = os.path.join(root, 'Landmark_Points', subject,
                                   'frame_lm')
    if subject == 'SN001':
      os.makedirs(landmark_folder, exist_ok=True)
    for frame in range(1, 7):
      blank = subject == 'SN001' and frame == 4
      image, matrix = faces.face_frame(*SIZE, shift=(frame - 3, 0),
                                       blank=blank)
      writer.write(image)
      if subject == 'SN001' and frame in (1, 2, 3, 5):
        scipy.io.savemat(os.path.join(landmark_folder, f'l{frame:04d}_lm.mat'),
                         {'pts': faces.landmarks_66(matrix)})
    writer.release()
    label_folder = os.path.join(root, 'ActionUnit_Labels', subject)
    os.makedirs(label_folder, exist_ok=True)
    for a, au in enumerate(AUS):
      count = 4 if (subject, au) == ('SN003', 26) else lines
      with open(os.path.join(label_folder, f'{subject}_au{au}.txt'), 'w') as f:
        f.writelines(f'{line},{intensity(s, line, a)}\n'
                     for line in range(1, count + 1))


if __name__ == '__main__':
  main()
