r"""Writes unbc_mcmaster/dummy_data/: a miniature UNBC-McMaster release.

  PYTHONPATH=. python data_builders/unbc_mcmaster/make_dummy_data.py

Two subjects (042-ll042 with two sequences, 109-ib109 with one), PNG frames,
66-point AAM landmark files and FACS files in MATLAB's ASCII format
(scientific notation): one empty (no AU), one with AU43 at intensity 0
(present: AU43 is binary) and one listing AU1 (not in the 10-AU set).
Frame 3 of ll042t1aaaff is blank with no landmark file.
"""

import os

import cv2

from data_builders.bp4d import make_dummy_data as faces

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = (112, 96)

# (subject, sequence) -> [facs lines per frame: [(AU, intensity)]].
SEQUENCES = {
    ('042-ll042', 'll042t1aaaff'): [[(4, 2), (6, 1), (43, 0)], [],
                                    [(12, 3)]],
    ('042-ll042', 'll042t2afaff'): [[(25, 1), (26, 2)]],
    ('109-ib109', 'ib109t1aeaff'): [[(1, 2), (7, 4)], [(9, 1), (10, 5),
                                                       (20, 2)]],
}


def _number(value: float) -> str:
  return f'{value:16.7e}'  # MATLAB `save -ascii`: '   4.0000000e+00'.


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  for (subject, sequence), frames in SEQUENCES.items():
    folders = {kind: os.path.join(root, *kind.split('/'), subject, sequence)
               for kind in ('Images', 'AAM_landmarks', 'Frame_Labels/FACS',
                            'Frame_Labels/PSPI')}
    for folder in folders.values():
      os.makedirs(folder, exist_ok=True)
    for index, facs in enumerate(frames, start=1):
      stem = f'{sequence}{index:03d}'
      blank = sequence == 'll042t1aaaff' and index == 3
      image, matrix = faces.face_frame(*SIZE, shift=(index - 2, 1),
                                       blank=blank)
      cv2.imwrite(os.path.join(folders['Images'], f'{stem}.png'), image)
      if not blank:
        with open(os.path.join(folders['AAM_landmarks'], f'{stem}_aam.txt'),
                  'w') as f:
          f.writelines(f'{_number(x)}{_number(y)}\n'
                       for x, y in faces.landmarks_66(matrix))
      with open(os.path.join(folders['Frame_Labels/FACS'], f'{stem}_facs.txt'),
                'w') as f:
        f.writelines(f'{_number(au)}{_number(level)}{_number(0)}{_number(0)}\n'
                     for au, level in facs)
      with open(os.path.join(folders['Frame_Labels/PSPI'], f'{stem}_facs.txt'),
                'w') as f:
        f.write(f'{_number(0)}\n')


if __name__ == '__main__':
  main()
