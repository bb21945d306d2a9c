"""`python -m au_jax.predict`: the command line of au_jax.predict (its
module docstring has the usage)."""

import sys
from typing import Sequence

from absl import app
from absl import flags

from au_jax import predict
from au_jax.predict import run as predict_run
from au_jax.predict import tracking


def _define_flags() -> None:
  """The CLI flags; defined only when run as a program, so importing
  au_jax.predict adds no flags to another program's absl FLAGS."""
  flags.DEFINE_string('checkpoint', None, 'Run directory.')
  flags.DEFINE_multi_string('input', [], 'Video, image or folder of images; '
                            'repeat for several.')
  flags.DEFINE_string('output_dir', None, 'Where <stem>.csv go.')
  flags.DEFINE_integer('smooth', None, 'Median window (odd); default the '
                       "run's tuned window, 1 = off.")
  flags.DEFINE_boolean('calibrate', False, 'Per-person baseline shift (see '
                       'au_jax/predict/table.py).')
  flags.DEFINE_boolean('plot', False, 'Write <stem>_aus.png.')
  flags.DEFINE_boolean('annotate', False, 'Write annotated copies.')
  flags.DEFINE_enum('faces', 'detect', ['detect', 'full_frame'],
                    'Find faces, or take each frame as a face crop.')
  flags.DEFINE_integer('batch_size', 32, 'Faces per model call.')
  flags.DEFINE_integer('full_scan_every', 5, 'Frames between whole-frame '
                       'face scans.')


def main(argv: Sequence[str]) -> int:
  """The CLI: exit 0, 1 when some input failed, 2 when nothing could run."""
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    print(f'predict: unexpected arguments {argv[1:]}', file=sys.stderr)
    return 2
  if not FLAGS.checkpoint or not FLAGS.input or not FLAGS.output_dir:
    print('predict: --checkpoint, --input and --output_dir are required.',
          file=sys.stderr)
    return 2
  try:
    options = predict.Options(
        faces=FLAGS.faces, smooth=FLAGS.smooth, calibrate=FLAGS.calibrate,
        batch_size=FLAGS.batch_size, plot=FLAGS.plot, annotate=FLAGS.annotate,
        tracker=tracking.Trackerpredict.Options(full_scan_every=FLAGS.full_scan_every))
    run = predict_run.predict_run.load_run(FLAGS.checkpoint)
  except ValueError as error:
    print(f'predict: {error}', file=sys.stderr)
    return 2
  results, errors = predict.predict_many(FLAGS.input, run, FLAGS.output_dir,
                                 options)
  for result in results:
    fps = result.frames / max(result.seconds['total'], 1e-9)
    print(f'{result.csv}: {result.frames} frames, {result.faces} face rows, '
          f'{result.tracks} track(s), {result.unreadable} unreadable, '
          f'{fps:.1f} frames/s' + ''.join(f'; {p}' for p in result.extra))
  for path, message in errors.items():
    print(f'predict: {path}: {message}', file=sys.stderr)
  return 1 if errors else 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
