"""Video timelines: AU intensities from emotion and spontaneous episodes.

Each episode has a smooth onset, an apex (with a slight wobble) and an offset
(smoothstep ramps). Emotion episodes switch on a prototype's AUs together
(EMFACS-style, ../shared/reference/facs.md, plus the co-occurrences seen in
spontaneous data: smiles bring 6, 7, 10, 14, 25 along) and set the frame's
emotion label; spontaneous episodes move one AU alone. A frame's intensity of
an AU is the largest any episode gives it; the coded intensity is that value
rounded to an integer 0-5 and a frame is an occurrence at coded intensity >= 2
(DISFA's rule). A small share of labels is unknown (-1) in short runs, as
BP4D's code 9.
"""

import dataclasses

import numpy as np

from au_jax import aus

AUS = aus.SYNTHETIC_AUS
AU_INDEX = {au: i for i, au in enumerate(AUS)}

# Share of frames with each AU present (coded intensity >= 2). BP4D's 12 AUs
# are ../shared/reference/protocols.md's base rates; 9, 25 and 26 are
# DISFA-like choices (rare nose wrinkling, lips often parted).
TARGET_RATES = {1: 0.21, 2: 0.17, 4: 0.20, 6: 0.46, 7: 0.55, 9: 0.06,
                10: 0.59, 12: 0.56, 14: 0.47, 15: 0.17, 17: 0.34, 23: 0.17,
                24: 0.15, 25: 0.35, 26: 0.15}


@dataclasses.dataclass(frozen=True)
class Prototype:
  """An emotion's AUs: `core` always, `optional` {au: probability}."""
  emotion: str
  core: tuple[int, ...]
  optional: dict[int, float]
  weight: float  # share of emotion episodes
  unilateral: tuple[int, ...] = ()  # AUs shown on one side only


PROTOTYPES = (
    Prototype('happy', (12,), {6: 0.85, 7: 0.55, 10: 0.85, 14: 0.6,
                               25: 0.35, 26: 0.1, 17: 0.1}, weight=0.62),
    Prototype('sad', (1, 4, 15), {17: 0.6, 14: 0.2, 7: 0.2}, weight=0.08),
    Prototype('anger', (4, 7, 23), {24: 0.5, 17: 0.45, 10: 0.35},
              weight=0.07),
    Prototype('fear', (1, 2, 4, 7), {25: 0.7, 26: 0.45, 14: 0.2}, weight=0.05),
    Prototype('disgust', (9, 10, 15), {17: 0.5, 4: 0.4, 7: 0.4, 24: 0.2},
              weight=0.06),
    Prototype('surprise', (1, 2, 26), {25: 0.9}, weight=0.07),
    Prototype('contempt', (12, 14), {24: 0.3}, weight=0.05,
              unilateral=(12, 14)),
)

# Expected spontaneous (single-AU) episodes per 64 frames, fitted once so the
# `default` config meets TARGET_RATES (see tests/test_synthetic_au.py).
SPONTANEOUS_RATE = {1: 0.55, 2: 0.41, 4: 0.24, 6: 0.13, 7: 1.24, 9: 0.06,
                    10: 1.02, 12: 0.03, 14: 0.47, 15: 0.4, 17: 1.21,
                    23: 0.72, 24: 0.48, 25: 0.9, 26: 0.19}
UNKNOWN_RUN_PROBABILITY = 0.1  # per (video, AU): one run of -1 labels


def envelope(num_frames: int, start: float, onset: float, apex: float,
             offset: float) -> np.ndarray:
  """[T] 0-1 onset/apex/offset profile with smoothstep ramps."""
  t = np.arange(num_frames, dtype=np.float64)
  rise = np.clip((t - start) / max(onset, 1e-6), 0.0, 1.0)
  fall = np.clip((start + onset + apex + offset - t) / max(offset, 1e-6),
                 0.0, 1.0)
  smooth = lambda u: u * u * (3.0 - 2.0 * u)
  return smooth(np.minimum(rise, fall))


def smooth_series(rng: np.random.Generator, num_frames: int, scale: float,
                  correlation: float = 8.0) -> np.ndarray:
  """[T] smooth random signal with std about `scale` (filtered noise)."""
  noise = rng.normal(size=num_frames + int(4 * correlation))
  kernel = np.exp(-0.5 * (np.arange(-2 * correlation, 2 * correlation + 1)
                          / correlation) ** 2)
  smooth = np.convolve(noise, kernel / np.sqrt((kernel ** 2).sum()), 'valid')
  return scale * smooth[:num_frames]


@dataclasses.dataclass(frozen=True)
class Timeline:
  """One video's labels and driving signals.

  intensity: [T, 15] continuous intensities that drive the renderer.
  coded: [T, 15] float32 coded intensity 0-5, -1 unknown.
  occurrence: [T, 15] int8 1/0/-1.
  emotion: [T] int32 index into aus.EMOTIONS.
  unilateral: [T, 15] int8 side of each AU (-1 left, 0 both, 1 right).
  """
  intensity: np.ndarray
  coded: np.ndarray
  occurrence: np.ndarray
  emotion: np.ndarray
  unilateral: np.ndarray


def _emotion_episodes(rng, num_frames, intensity, emotion, unilateral):
  weights = np.array([p.weight for p in PROTOTYPES])
  t = float(rng.uniform(-10.0, 6.0))  # may start mid-episode
  while t < num_frames:
    proto = PROTOTYPES[rng.choice(len(PROTOTYPES), p=weights / weights.sum())]
    onset, apex, offset = (rng.uniform(4, 10), rng.uniform(14, 48),
                           rng.uniform(4, 10))
    env = envelope(num_frames, t, onset, apex, offset)
    wobble = 1.0 + smooth_series(rng, num_frames, 0.08, 5.0)
    side = int(rng.choice([-1, 1]))
    for au in proto.core + tuple(proto.optional):
      peak = rng.uniform(2.2, 5.0) if au in proto.core else (
          rng.uniform(1.4, 4.5))
      keep = au in proto.core or rng.random() < proto.optional[au]
      if not keep:
        continue
      value = peak * env * wobble
      i = AU_INDEX[au]
      stronger = value > intensity[:, i]
      intensity[:, i] = np.where(stronger, value, intensity[:, i])
      if au in proto.unilateral:
        unilateral[stronger & (env > 0), i] = side
    label = aus.EMOTIONS.index(proto.emotion)
    emotion[env > 0.3] = label
    t += onset + apex + offset + rng.uniform(0, 10)


def _spontaneous_episodes(rng, num_frames, intensity):
  for au in AUS:
    i = AU_INDEX[au]
    count = rng.poisson(SPONTANEOUS_RATE[au] * num_frames / 64.0)
    for _ in range(count):
      onset, apex, offset = (rng.uniform(3, 7), rng.uniform(4, 20),
                             rng.uniform(3, 7))
      start = rng.uniform(-onset - apex / 2, num_frames - onset)
      value = rng.uniform(1.5, 4.5) * envelope(num_frames, start, onset, apex,
                                               offset)
      intensity[:, i] = np.maximum(intensity[:, i], value)


def video_timeline(seed: np.random.SeedSequence | int,
                   num_frames: int) -> Timeline:
  """AU intensities, labels and emotions of one video (deterministic)."""
  emotion_rng, spontaneous_rng, unknown_rng = [
      np.random.default_rng(s) for s in
      np.random.SeedSequence(seed).spawn(3)]
  intensity = np.zeros((num_frames, len(AUS)))
  emotion = np.zeros(num_frames, np.int32)
  unilateral = np.zeros((num_frames, len(AUS)), np.int8)
  _emotion_episodes(emotion_rng, num_frames, intensity, emotion, unilateral)
  _spontaneous_episodes(spontaneous_rng, num_frames, intensity)
  intensity = np.clip(intensity, 0.0, 5.0)
  coded = np.clip(np.round(intensity), 0, 5).astype(np.float32)
  occurrence = (coded >= 2).astype(np.int8)
  for i in range(len(AUS)):
    if unknown_rng.random() < UNKNOWN_RUN_PROBABILITY:
      length = int(unknown_rng.integers(4, 13))
      start = int(unknown_rng.integers(0, max(1, num_frames - length + 1)))
      coded[start:start + length, i] = -1.0
      occurrence[start:start + length, i] = -1
  return Timeline(intensity.astype(np.float32), coded, occurrence, emotion,
                  unilateral)
