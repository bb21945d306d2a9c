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


def flow_image(previous: np.ndarray, current: np.ndarray | None,
               method: str = 'dis', size: int | None = None) -> np.ndarray:
  """AUNets' flow image from `previous` to `current` (RGB uint8 frames).

  The flow is computed at the stored resolution on the grey frames, encoded
  by `flow_to_image` and then resized (bilinear, as
  au_jax.data.transforms.resize_face resizes the face) to `size` x `size`, so
  it lines up pixel for pixel with the resized face. Deviation: the paper
  computes flow on whole frames and cuts it with the face box; the datasets
  here store face crops (BP4D/DISFA 'crop' configs), so flow is computed on
  the crops (the face box of a video moves little between two frames).

  Args:
    previous, current: [H, W, 3] RGB uint8 (or [H, W] grey); current None
      gives the zero-motion image (mid-grey R, G and B: a still frame).
    method: 'dis' or 'tvl1' (optical_flow).
    size: output side; None keeps H x W.

  Returns:
    [size, size, 3] uint8.
  """
  if current is None:
    field = np.zeros(np.shape(previous)[:2] + (2,), np.float32)
  else:
    grey = [f if f.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(f),
                                               cv2.COLOR_RGB2GRAY)
            for f in (previous, current)]
    field = optical_flow(grey[0], grey[1], method)
  image = flow_to_image(field)
  if size is not None and image.shape[:2] != (size, size):
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
  return image


def mirror_flow_image(image: np.ndarray) -> np.ndarray:
  """The flow image of the mirrored frames: [..., H, W, 3] uint8 flipped on
  W with R (the encoded u) reflected about mid-grey (255 - R), G and B
  (v, |flow|) unchanged. Exact up to rounding of the encoding's .5 ties."""
  mirrored = np.asarray(image)[..., ::-1, :].copy()
  mirrored[..., 0] = 255 - mirrored[..., 0]
  return mirrored


def neighbour_pairs(subject: np.ndarray, sequence: np.ndarray,
                    view: np.ndarray, frame_index: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
  """Which two records each record's flow image is computed from.

  A record's flow goes to the next frame (next larger frame_index) of the
  same video and view (subject, sequence, view): (i, next). The last frame
  of a video has no next frame; it reuses the flow into it from the
  previous frame, (previous, i), the closest motion estimate at that
  instant (AUNets' code does not say). A one-frame video gets (i, i), the
  zero-motion image. Records may come in any order.

  Args:
    subject, sequence, view, frame_index: [N] per-record ids.

  Returns:
    first, second: [N] int64 record indices (flow from first to second);
    counts: 'frames' N, 'videos' (distinct subject/sequence/view),
    'last_frames' (records using the previous pair) and 'single_frames'
    (records with zero flow).
  """
  frame_index = np.asarray(frame_index)
  count = len(frame_index)
  keys = [np.asarray(a).astype(str) for a in (subject, sequence, view)]
  if any(len(k) != count for k in keys):
    raise ValueError('neighbour_pairs: subject, sequence, view and '
                     'frame_index differ in length.')
  video = np.unique(np.stack(keys, -1), axis=0, return_inverse=True)[1] \
      if count else np.zeros(0, np.int64)
  video = np.asarray(video).reshape(-1)
  order = np.lexsort((frame_index, video))  # By video, then frame.
  first = np.arange(count)
  second = np.arange(count)
  counts = {'frames': count, 'videos': int(len(np.unique(video))),
            'last_frames': 0, 'single_frames': 0}
  for position, index in enumerate(order):
    nxt = order[position + 1] if position + 1 < count else None
    prv = order[position - 1] if position > 0 else None
    if nxt is not None and video[nxt] == video[index]:
      if frame_index[nxt] == frame_index[index]:
        raise ValueError(
            f'neighbour_pairs: frame {frame_index[index]} of video '
            f'{[k[index] for k in keys]} appears twice (records {index} and '
            f'{nxt}).')
      second[index] = nxt
    elif prv is not None and video[prv] == video[index]:
      first[index], second[index] = prv, index
      counts['last_frames'] += 1
    else:
      counts['single_frames'] += 1
  return first, second, counts
