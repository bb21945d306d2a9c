r"""Writes bp4d/dummy_data/: a miniature BP4D release in the real format.

  PYTHONPATH=. python data_builders/bp4d/make_dummy_data.py

Frames are a real face photo (matplotlib's grace_hopper.jpg) shrunk and
shifted, so Haar detection works; one frame is blank (the no-face path).
F001 uses 4-digit frame names and the integer 0..99 header; M009 uses 3-digit
names and a named ~35-column header, as in the re-released files. The other
builders' dummy-data scripts reuse `face_frame`.
"""

import os

import cv2
import matplotlib.cbook
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# Eye centres of grace_hopper.jpg (600x512), image left then right, measured
# with the Haar eye cascade; dummy landmarks are placed around them.
PHOTO_EYES = np.array([[221.0, 190.0], [304.0, 187.0]])
PHOTO_FACE = np.array([150.0, 103.0, 230.0, 230.0])  # Haar box x, y, w, h.


def photo() -> np.ndarray:
  path = matplotlib.cbook.get_sample_data('grace_hopper.jpg',
                                          asfileobj=False)
  return cv2.imread(str(path))


def face_frame(width: int, height: int, shift: tuple[float, float] = (0, 0),
               scale: float = 0.3, blank: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
  """A [height, width, 3] BGR frame holding the photo and its 2x3 matrix.

  The photo is scaled by `scale` and its face box centred in the frame, then
  moved by `shift` pixels. `blank` gives a flat grey frame (no face).
  """
  if blank:
    return np.full((height, width, 3), 120, np.uint8), None
  cx, cy = PHOTO_FACE[:2] + PHOTO_FACE[2:] / 2
  matrix = np.array([[scale, 0, width / 2 - scale * cx + shift[0]],
                     [0, scale, height / 2 - scale * cy + shift[1]]])
  frame = cv2.warpAffine(photo(), matrix, (width, height),
                         flags=cv2.INTER_AREA, borderValue=(90, 90, 90))
  return frame, matrix


def landmarks_66(matrix: np.ndarray, jitter: float = 0.0) -> np.ndarray:
  """[66, 2] plausible 66-point landmarks (iBUG-68 minus 60 and 64).

  Only the eye contours (iBUG 36-47) sit where the photo's eyes are (they
  drive alignment); the other points are spread over the face box.
  """
  x, y, w, h = PHOTO_FACE
  rng = np.random.default_rng(0)
  points = np.stack([x + w * rng.uniform(0.1, 0.9, 68),
                     y + h * rng.uniform(0.3, 0.95, 68)], axis=1)
  angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
  ring = 8 * np.stack([np.cos(angles), 0.5 * np.sin(angles)], axis=1)
  points[36:42] = PHOTO_EYES[0] + ring
  points[42:48] = PHOTO_EYES[1] + ring
  points = np.delete(points, [60, 64], axis=0) + jitter
  return points @ matrix[:, :2].T + matrix[:, 2]


AU_COLUMNS_NAMED = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
                    19, 20, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
                    35, 36, 37)

# subject/task -> [(frame number, {AU: code}, blank)]; unlisted BP4D AUs 0.
SEQUENCES = {
    ('F001', 'T1'): [(1, {1: 1, 12: 1}, False), (2, {12: 1, 4: 9}, False),
                     (3, {}, True), (4, {24: 1, 23: 1}, False)],
    ('F001', 'T2'): [(10, {6: 1, 7: 1}, False), (11, {6: 1}, False)],
    ('M009', 'T1'): [(1, {2: 1}, False), (2, {14: 1, 15: 9}, False),
                     (3, {17: 1, 10: 1}, False)],
}
BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)


def main() -> None:
  root = os.path.join(HERE, 'dummy_data')
  os.makedirs(os.path.join(root, 'AUCoding', 'AU_OCC'), exist_ok=True)
  for (subject, task), frames in SEQUENCES.items():
    folder = os.path.join(root, 'Sequences', subject, task)
    os.makedirs(folder, exist_ok=True)
    named = subject == 'M009'
    header = (['Frame'] + [f'AU{a:02d}' for a in AU_COLUMNS_NAMED] if named
              else [str(i) for i in range(100)])
    rows = [','.join(header)]
    for number, codes, blank in frames:
      image, _ = face_frame(120, 96, shift=(number % 3 - 1, 0), blank=blank)
      name = f'{number:03d}.jpg' if named else f'{number:04d}.jpg'
      cv2.imwrite(os.path.join(folder, name), image,
                  [cv2.IMWRITE_JPEG_QUALITY, 80])
      columns = AU_COLUMNS_NAMED if named else range(1, 100)
      # Real files code AUs outside the 12 too; the uncoded ones are 9.
      values = [codes.get(a, 0 if a in BP4D_AUS or named else 9)
                for a in columns]
      rows.append(','.join(str(v) for v in [number] + values))
    if (subject, task) == ('F001', 'T1'):
      # An uncoded frame with an image (not written) ...
      image, _ = face_frame(120, 96)
      cv2.imwrite(os.path.join(folder, '0005.jpg'), image,
                  [cv2.IMWRITE_JPEG_QUALITY, 80])
    if (subject, task) == ('F001', 'T2'):
      # ... and a coded frame without an image (skipped and counted).
      rows.append(','.join(['12'] + ['0'] * 99))
    with open(os.path.join(root, 'AUCoding', 'AU_OCC',
                           f'{subject}_{task}.csv'), 'w') as f:
      f.write('\r\n'.join(rows) + '\r\n')


if __name__ == '__main__':
  main()
