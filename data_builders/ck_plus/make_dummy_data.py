r"""Writes ck_plus/dummy_data/: a miniature CK+ release in the real format.

  PYTHONPATH=. python data_builders/ck_plus/make_dummy_data.py

Frames are the BP4D dummy data's face photo (matplotlib's grace_hopper.jpg)
at 128x96 (real CK+ frames are 640x490); all but S005/001 are single-
channel PNGs, as most CK+ frames are. Label files use CK+'s scientific notation. SEQUENCES is
what tests/test_emotion_builders.py checks the records against.
"""

import os

import cv2
import numpy as np

from data_builders.bp4d import make_dummy_data as photos

HERE = os.path.dirname(os.path.abspath(__file__))

# (subject, sequence) -> (frame numbers, {AU: intensity} at the peak (the
# last frame), CK+ emotion code or None (no Emotion file)).
SEQUENCES = {
    ('S005', '001'): ((1, 2, 3, 4), {1: 0, 4: 3, 9: 2, 17: 4, 38: 1}, 3),
    ('S005', '002'): ((1, 2, 3), {12: 0, 25: 0}, None),
    ('S010', '004'): ((1, 2, 3, 4, 5), {6: 0, 12: 4, 25: 2}, 5),
}
COLOUR_SEQUENCES = (('S005', '001'),)


def sci(value: float) -> str:
  """A number as CK+ files write it: '   3.0000000e+00'."""
  return f'{value:18.7e}'


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  for (subject, sequence), (numbers, peak_aus, emotion) in SEQUENCES.items():
    parts = (subject, sequence)
    for folder in ('cohn-kanade-images', 'FACS', 'Emotion', 'Landmarks'):
      os.makedirs(os.path.join(root, folder, *parts), exist_ok=True)
    for number in numbers:
      frame, matrix = photos.face_frame(128, 96, shift=(number - 2, 0),
                                        scale=0.25)
      if parts not in COLOUR_SEQUENCES:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
      stem = f'{subject}_{sequence}_{number:08d}'
      cv2.imwrite(os.path.join(root, 'cohn-kanade-images', *parts,
                               f'{stem}.png'), frame)
      # 68 points: the 66 of the BP4D dummy data plus inner-lip corners.
      points = photos.landmarks_66(matrix)
      points = np.insert(points, [60, 63], points[[48, 54]], axis=0)
      with open(os.path.join(root, 'Landmarks', *parts,
                             f'{stem}_landmarks.txt'), 'w') as f:
        f.write(''.join(f'{sci(x)}{sci(y)}\n' for x, y in points))
    peak = f'{subject}_{sequence}_{numbers[-1]:08d}'
    with open(os.path.join(root, 'FACS', *parts, f'{peak}_facs.txt'),
              'w') as f:
      f.write(''.join(f'{sci(au)}{sci(level)}\n'
                      for au, level in peak_aus.items()))
    if emotion is not None:
      with open(os.path.join(root, 'Emotion', *parts, f'{peak}_emotion.txt'),
                'w') as f:
        f.write(f'{sci(emotion)}\n')


if __name__ == '__main__':
  main()
