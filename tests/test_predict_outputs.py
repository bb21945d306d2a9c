"""au_jax.predict keeps every row and never overwrites by accident.

Frames given as numpy arrays, output names that cannot collide, existing
outputs refused, unreadable files with their own rows, folder entries that
are not images named, --output_dir checked first, the progress bar and
quiet logs. The run and media are test_predict.py's fixtures (a DRML run at
its initial weights); `faces='full_frame'` keeps the detector out.
"""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from au_jax import predict
from au_jax.predict import io as predict_io
from data_builders.synthetic_au import config as synth_config
from data_builders.synthetic_au import generate
import test_predict

run_dir = test_predict.run_dir
run = test_predict.run
media = test_predict.media

BATCH = test_predict.BATCH
FULL_FRAME = dict(faces='full_frame', batch_size=BATCH, smooth=1)


def _rows(path):
  header, rows = predict_io.read_csv(path)
  return [dict(zip(header, row)) for row in rows]


def _probabilities(rows, aus):
  return np.array([[float(r[f'AU{a:02d}_p']) for a in aus] for r in rows])


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=test_predict.ROOT, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  return subprocess.run([sys.executable, '-m', 'au_jax.predict', *args],
                        capture_output=True, text=True, env=env,
                        cwd=test_predict.ROOT, timeout=300, check=False)


def test_output_names_keep_relative_paths(tmp_path):
  (tmp_path / 'v1.0').mkdir()
  assert predict_io.output_names(['a/s1/clip.mp4', 'a/s2/clip.mp4']) == [
      os.path.join('s1', 'clip'), os.path.join('s2', 'clip')]
  assert predict_io.output_names(['a/clip.mp4']) == ['clip']
  # A folder keeps its whole name (no extension to drop).
  assert predict_io.output_names(
      [str(tmp_path / 'x.jpg'), str(tmp_path / 'v1.0')]) == ['x', 'v1.0']
  assert predict_io.output_names(['a/b/x.jpg', 'a/c.png']) == [
      os.path.join('b', 'x'), 'c']


def test_colliding_outputs_are_refused_before_any_work(tmp_path):
  for name in ('x.jpg', 'x.mp4'):
    (tmp_path / name).write_bytes(b'')
  out = tmp_path / 'out'
  # The checkpoint does not exist: the refusal comes before it is read.
  with pytest.raises(ValueError, match=(
      f'{tmp_path / "x.jpg"} and {tmp_path / "x.mp4"} would both write '
      f'{out / "x.csv"}')):
    predict.predict([str(tmp_path / 'x.jpg'), str(tmp_path / 'x.mp4')],
                    str(tmp_path / 'no_run'), output_dir=str(out))
  assert not out.exists()
  # The same stem in two folders: two names, no collision.
  for folder in ('s1', 's2'):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / 'clip.mp4').write_bytes(b'')
  specs, errors = predict_io.plan_inputs(
      [str(tmp_path / 's1' / 'clip.mp4'), str(tmp_path / 's2' / 'clip.mp4')],
      str(out), plot=True)
  assert [s.name for s in specs] == [os.path.join('s1', 'clip'),
                                     os.path.join('s2', 'clip')]
  assert predict_io.output_files(specs[0], plot=True, annotate=True) == [
      os.path.join('s1', 'clip') + suffix
      for suffix in ('.csv', '_aus.png', '_annotated.mp4')]
  assert not errors


def test_existing_output_is_refused_unless_overwrite(run, media, tmp_path):
  out = str(tmp_path)
  first = predict.predict_file(media['photo'], run, out,
                               predict.Options(**FULL_FRAME))
  before = open(first.csv, encoding='utf-8').read()
  with open(first.csv, 'a', encoding='utf-8') as f:
    f.write('marker\n')
  with pytest.raises(ValueError, match=(
      f'{os.path.join(out, "photo.csv")} exists; --overwrite')):
    predict.predict_file(media['photo'], run, out,
                         predict.Options(**FULL_FRAME))
  assert open(first.csv, encoding='utf-8').read() == before + 'marker\n'
  again = predict.predict_file(
      media['photo'], run, out, predict.Options(overwrite=True, **FULL_FRAME))
  assert open(again.csv, encoding='utf-8').read() == before


def test_unreadable_files_have_their_own_rows(run, media, tmp_path):
  folder = tmp_path / 'frames'
  (folder / 'sub').mkdir(parents=True)
  cv2.imwrite(str(folder / 'a.png'), cv2.imread(media['photo']))
  (folder / 'b.jpg').write_bytes(b'')
  (folder / 'c.jpg').write_bytes(b'not a jpeg')
  cv2.imwrite(str(folder / 'd.png'), cv2.imread(media['photo']))
  (folder / 'notes.txt').write_text('not an image')
  result = predict.predict_file(str(folder), run, str(tmp_path / 'out'),
                                predict.Options(**FULL_FRAME))
  rows = _rows(result.csv)
  assert [(r['frame'], r['success'], r['status'], os.path.basename(r['file']))
          for r in rows] == [('1', '1', 'ok', 'a.png'),
                             ('2', '0', 'unreadable', 'b.jpg'),
                             ('3', '0', 'unreadable', 'c.jpg'),
                             ('4', '1', 'ok', 'd.png')]
  assert rows[1]['AU01_p'] == '' and rows[1]['face_id'] == '-1'
  assert (result.frames, result.unreadable, result.faces) == (4, 2, 2)
  assert result.problems == {
      str(folder / 'b.jpg'): 'unreadable: empty file (0 bytes)',
      str(folder / 'c.jpg'): 'unreadable: not an image OpenCV can decode '
                             '(10 bytes)'}
  assert result.skipped == ('notes.txt', 'sub/')
  # A video's undecodable frames are one line naming them.
  video = predict_io.InputSpec('clip.mp4', 'video', (), 'clip')
  lost = [('clip.mp4', k, 'frame could not be decoded') for k in (4, 9)]
  assert predict._problems(video, lost) == {  # pylint: disable=protected-access
      'clip.mp4': 'unreadable: 2 frame(s) could not be decoded (frames 4, 9)'}


def test_arrays_give_the_table_of_the_same_frames_as_files(run, run_dir,
                                                           tmp_path):
  frames = [r['image'] for r in generate.render_subject(
      synth_config.get('tiny'), 0, encode=False)][:5]  # RGB, 64 x 64.
  folder = tmp_path / 'frames'
  folder.mkdir()
  for i, frame in enumerate(frames):
    cv2.imwrite(str(folder / f'{i:04d}.png'), frame[..., ::-1])  # PNG: BGR.
  files = _rows(predict.predict_file(
      str(folder), run, str(tmp_path / 'files'),
      predict.Options(**FULL_FRAME)).csv)
  expected = _probabilities(files, run.aus)
  # An iterator (a generator) of RGB frames is one sequence.
  table = predict.predict((f for f in frames), run_dir, **FULL_FRAME)
  assert list(table['input']) == ['array'] * 5
  assert list(table['file']) == ['array'] * 5
  assert list(table['frame']) == [1, 2, 3, 4, 5]
  assert list(table['face_id']) == [0] * 5
  assert list(table['status']) == ['ok'] * 5
  np.testing.assert_allclose(
      table[[f'AU{a:02d}_p' for a in run.aus]].to_numpy(), expected,
      rtol=1e-5)
  # One image, and a [T, H, W, 3] array, through the same path.
  one = predict.predict_file(predict_io.array_input(frames[2]), run,
                             str(tmp_path / 'one'),
                             predict.Options(**FULL_FRAME))
  np.testing.assert_allclose(_probabilities(_rows(one.csv), run.aus),
                             expected[2:3], rtol=1e-5)
  stacked = predict.predict_file(predict_io.array_input(np.stack(frames)),
                                 run, str(tmp_path / 'stacked'),
                                 predict.Options(**FULL_FRAME))
  assert stacked.frames == 5
  with pytest.raises(ValueError, match=r'Frame 2 of the array input: .* got '
                     r'shape \(64, 64, 3\) dtype float32'):
    predict.predict_file(
        predict_io.array_input([frames[0], frames[1].astype(np.float32)]),
        run, str(tmp_path / 'bad'), predict.Options(**FULL_FRAME))
  with pytest.raises(ValueError, match=r'got shape \(64, 64\)'):
    predict_io.array_input(frames[0][..., 0])


def test_progress_bar_only_when_asked(run, media, tmp_path, capsys):
  predict.predict_file(media['video'], run, str(tmp_path / 'quiet'),
                       predict.Options(**FULL_FRAME))
  assert capsys.readouterr().err == ''
  predict.predict_file(media['video'], run, str(tmp_path / 'bar'),
                       predict.Options(progress=True, **FULL_FRAME))
  bar = capsys.readouterr().err.replace('\r', '\n').splitlines()
  # The total is the container's frame count (12 frames written).
  assert any(line.startswith('video: 100%') and '12/12' in line
             for line in bar), bar


def test_cli_refuses_bad_output_dir_and_collisions(tmp_path):
  (tmp_path / 'x.jpg').write_bytes(b'')
  (tmp_path / 'x.mp4').write_bytes(b'')
  not_a_folder = tmp_path / 'file.txt'
  not_a_folder.write_text('')
  done = _cli(f'--checkpoint={tmp_path / "no_run"}',
              f'--input={tmp_path / "x.jpg"}', f'--output_dir={not_a_folder}')
  assert (done.returncode, done.stderr) == (
      2, f'predict: --output_dir: {not_a_folder} is a file, not a folder.\n')
  done = _cli(f'--checkpoint={tmp_path / "no_run"}',
              f'--input={tmp_path / "x.jpg"}', f'--input={tmp_path / "x.mp4"}',
              f'--output_dir={tmp_path / "out"}')
  assert (done.returncode, done.stderr) == (
      2, f'predict: {tmp_path / "x.jpg"} and {tmp_path / "x.mp4"} would both '
      f'write {tmp_path / "out" / "x.csv"} (rename or move one)\n')
  assert not (tmp_path / 'out').exists()


def test_cli_verbose_shows_library_logs(run_dir, tmp_path):
  zero = tmp_path / 'zero.jpg'
  zero.write_bytes(b'')
  done = _cli(f'--checkpoint={run_dir}', f'--input={zero}',
              f'--output_dir={tmp_path / "out"}', '--verbose')
  assert done.returncode == 1, done.stderr[-2000:]
  assert 'Restoring checkpoint' in done.stderr
  assert f'predict: {zero}: unreadable: empty file (0 bytes)' in (
      done.stderr.splitlines())
  assert [r['status'] for r in _rows(tmp_path / 'out' / 'zero.csv')] == [
      'unreadable']
