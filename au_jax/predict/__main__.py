r"""Per-frame AU tables of videos, images and folders of images.

  python -m au_jax.predict --checkpoint=<run directory> \
      --input=clip.mp4 --input=photos/ --output_dir=out [--smooth=7] \
      [--calibrate] [--plot] [--annotate] [--faces=detect|full_frame] \
      [--overwrite] [--verbose]

Each --input gives out/<name>.csv: its path relative to the folder holding
all inputs, extension -> .csv (a/s1/clip.mp4 and a/s2/clip.mp4 give
out/s1/clip.csv and out/s2/clip.csv). Inputs that would write the same file,
and outputs that exist (without --overwrite), are refused before anything
is written. Columns: OpenFace 2 names, plus `status` (ok / no_face /
unreadable); see au_jax/predict/table.py.

On stderr, one `predict: <path>: <reason>` line per input that failed and
per image or video whose frames could not be decoded (their rows are kept,
status=unreadable), and one line naming a folder's entries that are not
images. Exit code: 0 when every frame was read, 1 when something above was
reported, 2 when nothing could run (a flag, --output_dir, colliding or
existing outputs, the checkpoint).
"""

import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from au_jax import predict
from au_jax.predict import io as predict_io
from au_jax.predict import run as predict_run
from au_jax.predict import tracking


def _define_flags() -> None:
  """The CLI flags; defined only when run as a program, so importing
  au_jax.predict adds no flags to another program's absl FLAGS."""
  flags.DEFINE_string('checkpoint', None, 'Run directory (config.json and '
                      'checkpoints/), or a fold directory of per-AU runs.')
  flags.DEFINE_multi_string('input', [], 'Video, image or folder of images '
                            '(the frames of one sequence); repeat for '
                            'several.')
  flags.DEFINE_string('output_dir', None, 'Where the CSVs go: <name>.csv, '
                      'name = the input path relative to the folder holding '
                      'all inputs, extension dropped.')
  flags.DEFINE_boolean('overwrite', False, 'Replace outputs that exist '
                       '(else they are refused, nothing written).')
  flags.DEFINE_integer('smooth', None, 'Median window (>= 1); default the '
                       "run's tuned window, 1 = off.")
  flags.DEFINE_boolean('calibrate', False, 'Per-person baseline shift (see '
                       'au_jax/predict/table.py).')
  flags.DEFINE_boolean('plot', False, 'Write <name>_aus.png.')
  flags.DEFINE_boolean('annotate', False, 'Write annotated copies '
                       '(<name>_annotated.mp4, .png or folder).')
  flags.DEFINE_enum('faces', 'detect', ['detect', 'full_frame'],
                    'Find faces, or take each frame as a face crop.')
  flags.DEFINE_integer('batch_size', 32, 'Faces per model call.')
  flags.DEFINE_integer('full_scan_every', 5, 'Frames between whole-frame '
                       'face scans.')
  flags.DEFINE_boolean('progress', None, 'Progress bar over the frames of '
                       'each video or folder; default on when stderr is a '
                       'terminal.')
  flags.DEFINE_boolean('verbose', False, 'Show library INFO logs '
                       '(checkpoint loading).')


def _error(message: str) -> None:
  for line in message.splitlines():
    print(f'predict: {line}', file=sys.stderr)


def _report(path: str, result: predict.Result | None,
            problems: dict[str, str]) -> None:
  """Prints each input as it finishes: its CSV on stdout, problems on
  stderr."""
  if result is not None:
    fps = result.frames / max(result.seconds['total'], 1e-9)
    print(f'{result.csv}: {result.frames} frames, {result.faces} face rows, '
          f'{result.tracks} track(s), {result.unreadable} unreadable, '
          f'{fps:.1f} frames/s' + ''.join(f'; {p}' for p in result.extra),
          flush=True)
  for file, reason in problems.items():
    _error(f'{file}: {reason}')
  del path  # Named in `problems`.


def main(argv: Sequence[str]) -> int:
  """The CLI (module doc); returns the exit code."""
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    _error(f'unexpected arguments {argv[1:]}')
    return 2
  if not FLAGS.checkpoint or not FLAGS.input or not FLAGS.output_dir:
    _error('--checkpoint, --input and --output_dir are required.')
    return 2
  # Orbax and JAX log every checkpoint read at INFO (~20 lines).
  logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
  progress = (sys.stderr.isatty() if FLAGS.progress is None
              else FLAGS.progress)
  try:
    options = predict.Options(
        faces=FLAGS.faces, smooth=FLAGS.smooth, calibrate=FLAGS.calibrate,
        batch_size=FLAGS.batch_size, plot=FLAGS.plot, annotate=FLAGS.annotate,
        overwrite=FLAGS.overwrite, progress=progress,
        tracker=tracking.TrackerOptions(
            full_scan_every=FLAGS.full_scan_every))
  except ValueError as error:
    _error(str(error))
    return 2
  try:
    predict_io.check_output_dir(FLAGS.output_dir)
  except ValueError as error:
    _error(f'--output_dir: {error}')
    return 2
  try:
    specs, errors = predict_io.plan_inputs(
        FLAGS.input, FLAGS.output_dir, options.plot, options.annotate,
        options.overwrite)
  except ValueError as error:  # Colliding or existing outputs.
    _error(str(error))
    return 2
  for path, message in errors.items():
    _error(f'{path}: {message}')
  for spec in specs:
    if spec.skipped:
      count = len(spec.skipped)
      _error(f'{spec.path}: skipped {count} non-image '
             f'{"entry" if count == 1 else "entries"}: '
             f'{", ".join(spec.skipped)}')
  if not specs:
    return 1
  try:
    run = predict_run.load_run(FLAGS.checkpoint)
  except ValueError as error:
    _error(str(error))
    return 2
  _, failed = predict.predict_many(specs, run, FLAGS.output_dir, options,
                                   report=_report)
  return 1 if errors or failed else 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
