"""Dense optical flow and the AUNets flow-to-image encoding.

AUNets (aunets_2017.txt sec. 3.3 and 4.1.5) feeds a CNN an image whose
channels are the normalised x motion, y motion and flow magnitude. The paper
computes Brox et al.'s variational flow on a GPU; on CPU we default to DIS
(Kroeger et al. 2016, ~ms per 224x224 pair) and offer TV-L1 (OpenCV contrib),
the variational method closest to Brox, as the slower option.
"""

import cv2
import numpy as np


def optical_flow(previous: np.ndarray, current: np.ndarray,
                 method: str = 'dis') -> np.ndarray:
  """Dense flow from `previous` to `current`.

  Args:
    previous, current: [H, W, 3] BGR or [H, W] grey uint8 frames.
    method: 'dis' (cv2.DISOpticalFlow, MEDIUM preset) or 'tvl1'
      (cv2.optflow.DualTVL1OpticalFlow, opencv-contrib).

  Returns:
    [H, W, 2] float32 (u, v): the point at (x, y) in `previous` moves to
    (x + u, y + v) in `current`.
  """
  grey = [f if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
          for f in (previous, current)]
  if grey[0].shape != grey[1].shape:
    raise ValueError(f'Flow frames differ in shape: {grey[0].shape} vs '
                     f'{grey[1].shape}.')
  if method == 'dis':
    solver = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
  elif method == 'tvl1':
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
  else:
    raise ValueError(f"Unknown flow method {method!r}: use 'dis' or 'tvl1'.")
  return solver.calc(grey[0], grey[1], None).astype(np.float32)


def flow_to_image(flow: np.ndarray, magnitude: bool = True) -> np.ndarray:
  """AUNets flow embedding as an RGB image.

  R = u, G = -v, B = |flow| (or 0 when `magnitude` is False), each mapped
  linearly from [-D, D] to [0, 255] with D = max(1, max|u|, max|v|), so a
  still frame is mid-grey (128) in R and G. Normalising per image keeps the
  motion visible whatever its size; D >= 1 stops sub-pixel noise from being
  stretched to the full range. B lies in [128, 255] and clips where
  |flow| > D (diagonal motion).

  Args:
    flow: [H, W, 2] float (u, v) pixels.

  Returns:
    [H, W, 3] uint8 RGB.
  """
  u, v = flow[..., 0], flow[..., 1]
  bound = max(1.0, float(np.abs(u).max()), float(np.abs(v).max()))
  third = np.hypot(u, v) if magnitude else np.zeros_like(u)
  channels = np.stack([u, -v, third], axis=-1)
  image = (channels + bound) * (255.0 / (2 * bound))
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)
