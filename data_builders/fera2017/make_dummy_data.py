r"""Writes fera2017/dummy_data/: a miniature FERA 2017 release.

  PYTHONPATH=. python data_builders/fera2017/make_dummy_data.py

Training: F001 T1 (3 frames; view 5's second frame blank; intensity files)
and M009 T6 (3 frames, 2 label rows: the third frame is unlabelled).
Validation: F007 T2 (2 frames). Every sequence has 9 view videos (mp4v) that
share one label file; a view is simulated by shifting and scaling the face.
"""

import os

import cv2

from data_builders.bp4d import make_dummy_data as faces

HERE = os.path.dirname(os.path.abspath(__file__))
AUS = (1, 4, 6, 7, 10, 12, 14, 15, 17, 23)
SIZE = (128, 112)
# (partition, subject, task) -> (frames in video, label rows as AU->1 sets).
SEQUENCES = {
    ('TR', 'F001', 'T1'): (3, [{1, 12}, {4, 23, 9}, {6, 7, 10}]),
    ('TR', 'M009', 'T6'): (3, [{14, 15}, {17}]),
    ('VA', 'F007', 'T2'): (2, [{1, 4}, {12}]),
}
FOLDERS = {'TR': ('FERA17_Train_MV', 'Train_Occ', 'Train_Int'),
           'VA': ('FERA17_Valid_MV', 'Valid_Occ', 'Valid_Int')}


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  for (partition, subject, task), (length, rows) in SEQUENCES.items():
    video_dir, occ_dir, int_dir = (os.path.join(root, f)
                                   for f in FOLDERS[partition])
    for folder in (video_dir, occ_dir):
      os.makedirs(folder, exist_ok=True)
    base = f'FERA17_{partition}_{subject}_{task}'
    for view in range(1, 10):
      writer = cv2.VideoWriter(os.path.join(video_dir, f'{base}_{view}.mp4'),
                               cv2.VideoWriter_fourcc(*'mp4v'), 25, SIZE)
      for frame in range(length):
        blank = (subject, view, frame) == ('F001', 5, 1)
        image, _ = faces.face_frame(
            *SIZE, shift=(2 * (view - 5), frame), scale=0.28 + 0.01 * view,
            blank=blank)
        writer.write(image)
      writer.release()
    # Frame numbers start at 1 as in the BP4D coding; '9' marks not coded.
    lines = ['Frame,' + ','.join(f'AU{a:02d}' for a in AUS)]
    for number, positive in enumerate(rows, start=1):
      lines.append(','.join([str(number)] + [
          '9' if (a == 23 and 9 in positive) else str(int(a in positive))
          for a in AUS]))
    with open(os.path.join(occ_dir, f'{base}.csv'), 'w') as f:
      f.write('\n'.join(lines) + '\n')
    if subject == 'F001':
      os.makedirs(int_dir, exist_ok=True)
      for au in (1, 4, 6, 10, 12, 14, 17):
        with open(os.path.join(int_dir, f'{base}_AU{au:02d}_Int.csv'),
                  'w') as f:
          f.writelines(f'{n},{(n + au) % 6 if n != 2 else 9}\n'
                       for n in range(1, len(rows) + 1))


if __name__ == '__main__':
  main()
