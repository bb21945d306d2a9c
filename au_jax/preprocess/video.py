"""Streaming frame readers: a video is never held in memory whole.

Builders read through the checked readers (`decode_image_file`,
`checked_video_frames`): OpenCV decodes half of a truncated JPEG, fills the
rest with grey and only prints a warning, so completeness is checked on the
bytes (JPEG end-of-image marker, PNG IEND chunk) before decoding.
"""

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


def checked_video_frames(
    path: str, max_consecutive_failures: int = 25
) -> Iterator[tuple[np.ndarray | None, int]]:
  """Yields (frame or None, declared frame count) for every frame of a video.

  A frame that fails to decode while the container says more frames follow
  is yielded as None (the caller counts it), so frame i stays frame i of the
  label file; reading stops at the declared end, or after
  `max_consecutive_failures` failures in a row (a truncated file).

  Yields:
    ([H, W, 3] uint8 BGR frame or None, frames the container declares; 0 when
    it does not say).

  Raises:
    FileNotFoundError / ValueError naming `path` when it is missing or
    OpenCV cannot open it.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'Video {path} does not exist.')
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f'OpenCV cannot open video {path} (codec missing?).')
  declared = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
  index, failures = 0, 0
  try:
    while True:
      ok, frame = capture.read()
      if ok and frame is not None:
        failures = 0
        yield frame, declared
      else:
        failures += 1
        if index >= declared or failures > max_consecutive_failures:
          return
        yield None, declared
      index += 1
  finally:
    capture.release()


JPEG_END = b'\xff\xd9'
PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'


def image_damage(data: bytes) -> str | None:
  """Why encoded image bytes are incomplete, or None when they look whole.

  JPEG must start with SOI (FFD8) and end with EOI (FFD9); PNG must end with
  its IEND chunk. Trailing zero padding is allowed (some writers pad). Other
  formats are left to the decoder.
  """
  if not data:
    return 'empty file'
  tail = data.rstrip(b'\x00')
  if data[:2] == b'\xff\xd8':
    return None if tail.endswith(JPEG_END) else (
        'truncated JPEG (no end-of-image marker FFD9)')
  if data[:8] == b'\x89PNG\r\n\x1a\n':
    return None if tail.endswith(PNG_END) else 'truncated PNG (no IEND chunk)'
  return None


def decode_image_file(path: str) -> tuple[np.ndarray | None, str | None]:
  """(BGR image, None) for a complete image file, else (None, reason).

  Raises:
    FileNotFoundError naming `path` when it does not exist (a missing file is
    a layout error, not a damaged frame).
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f'Image {path} does not exist.') from None
  reason = image_damage(data)
  if reason:
    return None, reason
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    return None, 'OpenCV cannot decode it (not an image, or corrupt)'
  return image, None


def read_image(path: str) -> np.ndarray:
  """[H, W, 3] uint8 BGR image, or a ValueError naming `path`."""
  image, reason = decode_image_file(path)
  if image is None:
    raise ValueError(f'Cannot read image {path}: {reason}.')
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
