r"""Contact sheet of synthetic_au: subjects x AUs at apex, and a video strip.

  python -m data_builders.synthetic_au.contact_sheet \
      [--out=data_builders/synthetic_au/contact_sheet.png]

Top: each row is one subject; the first column is the subject's neutral face,
then one column per AU at intensity 4 (D) alone, drawn frontal with clean
camera settings so the cues are easy to see. Bottom: every 4th frame of a
`default` video with its real nuisances and the AUs labelled present.
"""

import argparse
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from au_jax import aus
from data_builders.synthetic_au import au_effects
from data_builders.synthetic_au import config as config_lib
from data_builders.synthetic_au import face_geometry
from data_builders.synthetic_au import generate
from data_builders.synthetic_au import render

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), 'contact_sheet.png')


def clean_look(image_size: int) -> render.Look:
  """Grey background, frontal light, no blur, little noise, high quality."""
  size = image_size * render.SUPERSAMPLE
  return render.Look(
      background=np.full((size, size, 3), 150, np.uint8),
      light=np.array([0.2, -0.3, 0.93], np.float32), ambient=0.55,
      diffuse=0.5, cast=np.ones(3, np.float32), blur_sigma=0.0,
      noise_std=0.5, jpeg_quality=95)


def apex_face(subject_index: int, au: int | None, intensity: float = 4.0,
              image_size: int = 128) -> np.ndarray:
  """[S, S, 3] uint8: one subject, frontal, with AU `au` (None: neutral)."""
  person = generate.identity(subject_index)
  level = np.zeros(len(aus.SYNTHETIC_AUS), np.float32)
  if au is not None:
    level[au_effects.AU_INDEX[au]] = intensity
  sides = np.zeros(len(aus.SYNTHETIC_AUS), np.int8)
  size = image_size * render.SUPERSAMPLE
  pose = face_geometry.Pose(0.0, 0.0, 0.0, size * 0.5, size * 0.45,
                            size * 0.35)
  image, _ = render.render_frame(
      person, au_effects.deform(person, level, sides),
      au_effects.cue_strengths(person, level, sides), pose,
      clean_look(image_size), np.random.default_rng(0), image_size)
  return image


def draw(out: str, subjects=(0, 1, 2, 3, 4, 5), strip_subject: int = 6,
         strip_video: int = 0) -> str:
  columns = [None] + list(aus.SYNTHETIC_AUS)
  config = config_lib.get('default')
  strip_config = config_lib.SynthConfig(
      'strip', strip_subject + 1, strip_video + 1, config.frames_per_video,
      config.image_size, seed=config.seed)
  strip = generate.render_subject(strip_config, strip_subject,
                                  encode=False)
  strip = [r for r in strip if r['sequence'].endswith(f'T{strip_video + 1}')
           ][::4][:len(columns)]
  rows = len(subjects) + 1
  figure, axes = plt.subplots(rows, len(columns),
                              figsize=(1.25 * len(columns), 1.45 * rows))
  for row, subject in enumerate(subjects):
    for column, au in enumerate(columns):
      ax = axes[row, column]
      ax.imshow(apex_face(subject, au))
      if row == 0:
        ax.set_title('neutral' if au is None else f'AU{au}', fontsize=9)
      if column == 0:
        ax.set_ylabel(config_lib.subject_id(subject), fontsize=9)
  for column in range(len(columns)):
    ax = axes[-1, column]
    if column < len(strip):
      record = strip[column]
      ax.imshow(record['image'])
      present = [str(au) for au, o in zip(aus.SYNTHETIC_AUS,
                                          record['au_occurrence']) if o == 1]
      emotion = aus.EMOTIONS[record['emotion']]
      ax.set_title(f"f{record['frame_index']} {emotion}\n"
                   + (' '.join(present) or '-'), fontsize=6.5)
    if column == 0:
      ax.set_ylabel(f'{config_lib.subject_id(strip_subject)} video',
                    fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  figure.suptitle('synthetic_au: subjects x AUs at intensity 4 (clean camera);'
                  ' bottom: a default video, every 4th frame, AUs present',
                  fontsize=10)
  figure.tight_layout()
  figure.savefig(out, dpi=64)
  plt.close(figure)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default=DEFAULT_OUT)
  print(draw(parser.parse_args().out))


if __name__ == '__main__':
  main()
