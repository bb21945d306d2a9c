"""Sizes of the synthetic_au builder configs.

`tiny` is for tests, `small` for the test that training learns (enough
held-out frames to read F1 against its floor), `default` is what the main
jobs train on (24 subjects, three subject-exclusive folds of 8), `multiview` shows the first 12 `default`
people from 9 head poses (3 yaw x 3 pitch, FERA 2017 style).

Two populations of other people (their own identity seeds):
`identities` is a face-identity set in the manner of CelebA / VGGFace2 (IdenNet's
face-clustering data): 500 people, 4 one-frame "videos" each, so every image
has its own expression, head pose, background and lighting; AU labels are
stored unknown (-1), as in the real identity datasets. `shifted` is an
AU-labelled population from another "lab" (darker skin tones, dimmer and more
coloured light, more head rotation) for cross-dataset tests: train on
`default`, test on `shifted`.
"""

import dataclasses

from data_builders.synthetic_au import render

# Identities are seeded from this and the subject index only, so subject S03
# is the same person in every config (multiview reuses the default people).
IDENTITY_SEED = 20170516


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """What to render.

  Attributes:
    name: builder config name.
    num_subjects: subjects S01..SNN, one split each.
    videos_per_subject: sequences per subject (like BP4D's tasks).
    frames_per_video: frames per sequence.
    image_size: stored square image side in pixels.
    multiview: render every frame from the 9 `VIEWS` poses (view 1-9);
      otherwise one near-frontal camera (view 0).
    seed: seeds the videos (episodes, head motion, nuisances).
    identity_seed: seeds the people; configs sharing it show the same person
      as subject S<k>.
    au_labels: False stores every AU label as unknown (-1) (identity data).
    pose_range: (yaw, pitch) degrees; each video's head is turned by a
      uniform draw in +-range (0 = the near-frontal camera of `default`).
    skin_tone_range: interval of `face_geometry.SKIN_TONES` positions that
      skin tones are drawn from (0 = lightest, 5 = darkest).
    lighting: per-video lighting ranges (`render.Lighting`).
  """
  name: str
  num_subjects: int
  videos_per_subject: int
  frames_per_video: int
  image_size: int
  multiview: bool = False
  seed: int = 0
  # The defaults below reproduce tiny/default/multiview byte for byte.
  identity_seed: int = IDENTITY_SEED
  au_labels: bool = True
  pose_range: tuple[float, float] = (0.0, 0.0)
  skin_tone_range: tuple[float, float] = (0.0, 5.0)
  lighting: render.Lighting = render.Lighting()

  @property
  def num_views(self) -> int:
    return len(VIEWS) if self.multiview else 1

  @property
  def frames_per_subject(self) -> int:
    return self.videos_per_subject * self.frames_per_video * self.num_views


# (yaw, pitch) in degrees of views 1-9: view = 3 * pitch_row + yaw_col + 1,
# pitch rows top (camera above, face seen from above) to bottom, yaw columns
# subject's left to right. View 5 is frontal. Our own layout, not FERA 2017's
# numbering.
VIEWS = tuple((yaw, pitch) for pitch in (-20.0, 0.0, 20.0)
              for yaw in (-30.0, 0.0, 30.0))
FRONTAL_VIEW = 5

CONFIGS = (
    SynthConfig('tiny', num_subjects=6, videos_per_subject=2,
                frames_per_video=8, image_size=64, seed=1),
    # Enough held-out frames for a test that training beats the all-positive
    # floor (tests/test_learning.py) in a minute of CPU.
    SynthConfig('small', num_subjects=12, videos_per_subject=4,
                frames_per_video=16, image_size=80, seed=6),
    SynthConfig('default', num_subjects=24, videos_per_subject=5,
                frames_per_video=64, image_size=128, seed=2),
    SynthConfig('multiview', num_subjects=12, videos_per_subject=3,
                frames_per_video=32, image_size=128, multiview=True, seed=3),
    SynthConfig('identities', num_subjects=500, videos_per_subject=4,
                frames_per_video=1, image_size=64, seed=4,
                identity_seed=IDENTITY_SEED + 1, au_labels=False,
                pose_range=(20.0, 12.0)),
    SynthConfig('shifted', num_subjects=12, videos_per_subject=4,
                frames_per_video=32, image_size=128, seed=5,
                identity_seed=IDENTITY_SEED + 2, pose_range=(10.0, 6.0),
                skin_tone_range=(2.0, 5.0),
                lighting=render.Lighting(ambient=(0.3, 0.5),
                                         diffuse=(0.45, 0.75),
                                         cast=(0.75, 1.2))),
)


def get(name: str) -> SynthConfig:
  for config in CONFIGS:
    if config.name == name:
      return config
  raise ValueError(f'synthetic_au has no config {name!r}; its configs are '
                   f'{[c.name for c in CONFIGS]}.')


def subject_id(index: int) -> str:
  """Split name of subject `index` (0-based): 'S01', 'S02', ..., 'S500'."""
  return f'S{index + 1:02d}'
