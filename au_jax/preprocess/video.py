"""Streaming frame readers: a video is never held in memory whole."""

from collections.abc import Iterator
import os

import cv2
import numpy as np


def video_frames(path: str) -> Iterator[np.ndarray]:
  """Yields the [H, W, 3] uint8 BGR frames of a video, one at a time.

  Raises:
    FileNotFoundError / ValueError naming `path` when it is missing or
    OpenCV cannot open it.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'Video {path} does not exist.')
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f'OpenCV cannot open video {path} (codec missing?).')
  try:
    while True:
      ok, frame = capture.read()
      if not ok:
        return
      yield frame
  finally:
    capture.release()


def read_image(path: str) -> np.ndarray:
  """[H, W, 3] uint8 BGR image, or a ValueError naming `path`."""
  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f'Cannot read image {path} (missing or corrupt).')
  return image


def encode_image(image_bgr: np.ndarray, encoding: str,
                 jpeg_quality: int = 95) -> bytes:
  """PNG or JPEG bytes of a BGR image (TFDS stores them as given)."""
  if encoding == 'jpeg':
    ok, data = cv2.imencode('.jpg', image_bgr,
                            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
  elif encoding == 'png':
    ok, data = cv2.imencode('.png', image_bgr)
  else:
    raise ValueError(f"encoding must be 'png' or 'jpeg', got {encoding!r}.")
  if not ok:
    raise ValueError(f'OpenCV failed to encode a {image_bgr.shape} image.')
  return data.tobytes()
