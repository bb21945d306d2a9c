r"""Frames per second of a real-dataset build, on generated full-size frames.

  PYTHONPATH=. python benchmarks/build_throughput.py --dataset=bp4d \
      --subjects=2 --frames=60 --workers=0,2,beam,beam:2 --config=crop

Writes a BP4D-layout (JPEG frames, 1392x1040 like the real release) or
DISFA-layout (XVID video, 1024x768) manual folder of `--subjects` x
`--frames` face frames (matplotlib's grace_hopper photo, so Haar does real
work), builds it with each `--workers` entry and prints frames/s:

  N       the local path with AU_JAX_BUILD_WORKERS=N (0: in-process, N > 0:
          N spawned worker processes);
  beam    the Beam path under the DirectRunner's batch engine, the
          FnApiRunner, in this process (needs the `beam` extra; named
          directly because DirectRunner() in Beam 2.77 first tries to
          download the Prism runner binary from GitHub);
  beam:N  the same with N worker processes
          (direct_running_mode=multi_processing).

Every entry builds the same generated folder into its own data_dir. The
dummy_data folders are too small (a few frames) to time anything but
start-up.
"""

import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
import cv2
import tensorflow_datasets as tfds

from au_jax import prepare
from data_builders.bp4d import make_dummy_data as faces

FLAGS = flags.FLAGS
flags.DEFINE_enum('dataset', 'bp4d', ['bp4d', 'disfa'], 'Layout to time.')
flags.DEFINE_integer('subjects', 2, 'Subjects (splits) to generate.')
flags.DEFINE_integer('frames', 60, 'Frames per subject.')
flags.DEFINE_string('workers', '0,2', 'Comma-separated entries: a worker '
                    'count N, beam (DirectRunner) or beam:N (DirectRunner, '
                    'N processes).')
flags.DEFINE_string('config', 'crop', 'Builder config.')

BP4D_SUBJECTS = ('F001', 'M007', 'F018', 'F008')
DISFA_SUBJECTS = ('SN001', 'SN002', 'SN003', 'SN004')


def write_bp4d(root: str, subjects: int, frames: int) -> None:
  os.makedirs(os.path.join(root, 'AUCoding', 'AU_OCC'))
  for subject in BP4D_SUBJECTS[:subjects]:
    folder = os.path.join(root, 'Sequences', subject, 'T1')
    os.makedirs(folder)
    rows = [','.join(str(i) for i in range(100))]
    for n in range(1, frames + 1):
      image, _ = faces.face_frame(1392, 1040, shift=(n % 7, 0), scale=1.0)
      cv2.imwrite(os.path.join(folder, f'{n:04d}.jpg'), image)
      rows.append(','.join([str(n)] + [str(n % 2)] * 99))
    with open(os.path.join(root, 'AUCoding', 'AU_OCC', f'{subject}_T1.csv'),
              'w') as f:
      f.write('\n'.join(rows) + '\n')


def write_disfa(root: str, subjects: int, frames: int) -> None:
  os.makedirs(os.path.join(root, 'Video_LeftCamera'))
  for subject in DISFA_SUBJECTS[:subjects]:
    writer = cv2.VideoWriter(
        os.path.join(root, 'Video_LeftCamera', f'LeftVideo{subject}_comp.avi'),
        cv2.VideoWriter_fourcc(*'XVID'), 20, (1024, 768))
    for n in range(frames):
      writer.write(faces.face_frame(1024, 768, shift=(n % 7, 0),
                                    scale=0.9)[0])
    writer.release()
    folder = os.path.join(root, 'ActionUnit_Labels', subject)
    os.makedirs(folder)
    for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
      with open(os.path.join(folder, f'{subject}_au{au}.txt'), 'w') as f:
        f.writelines(f'{n},{n % 6}\n' for n in range(1, frames + 1))


def download_config_for(entry: str, manual: str
                        ) -> tfds.download.DownloadConfig:
  """The DownloadConfig of one --workers entry (see the module doc)."""
  if entry == 'beam' or entry.startswith('beam:'):
    # pylint: disable=g-import-not-at-top
    from apache_beam.options import pipeline_options
    from apache_beam.runners.portability import fn_api_runner
    processes = entry.partition(':')[2]
    if processes and not processes.isdigit():
      raise ValueError(f'--workers entry {entry!r}: expected beam:<N>.')
    # flags=[]: not this script's own command line.
    options = pipeline_options.PipelineOptions(
        flags=[], direct_num_workers=int(processes),
        direct_running_mode='multi_processing') if processes else (
            pipeline_options.PipelineOptions(flags=[]))
    return tfds.download.DownloadConfig(
        manual_dir=manual, beam_runner=fn_api_runner.FnApiRunner(),
        beam_options=options)
  if not entry.isdigit():
    raise ValueError(f'--workers entry {entry!r}: expected a worker count, '
                     'beam or beam:<N>.')
  os.environ['AU_JAX_BUILD_WORKERS'] = entry
  return tfds.download.DownloadConfig(manual_dir=manual)


def main(argv):
  del argv
  scratch = tempfile.mkdtemp(prefix='au_jax_bench_')
  try:
    manual = os.path.join(scratch, 'manual')
    start = time.time()
    (write_bp4d if FLAGS.dataset == 'bp4d' else write_disfa)(
        manual, FLAGS.subjects, FLAGS.frames)
    print(f'wrote {FLAGS.subjects}x{FLAGS.frames} frames in '
          f'{time.time() - start:.1f} s')
    for entry in FLAGS.workers.split(','):
      download_config = download_config_for(entry.strip(), manual)
      builder = prepare.get_builder(
          FLAGS.dataset, FLAGS.config,
          os.path.join(scratch, 'out_' + entry.strip().replace(':', '_')))
      start = time.time()
      builder.download_and_prepare(download_config=download_config)
      seconds = time.time() - start
      total = sum(s.num_examples for s in builder.info.splits.values())
      print(f'{FLAGS.dataset}/{FLAGS.config} workers={entry}: {total} '
            f'frames in {seconds:.1f} s = {total / seconds:.1f} frames/s')
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
