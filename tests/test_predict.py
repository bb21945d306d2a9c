"""au_jax.predict: videos and images -> per-frame AU tables.

Media are made here: a real photograph (matplotlib's grace_hopper.jpg, as
the builders' dummy data use), synthetic_au renders, a video of both written
to .mp4 with cv2.VideoWriter, a blank frame, and a picture of several faces.
The run is DRML `configs/drml.py:test` at its initial weights (see run_dir).
"""

import json
import os
import shutil
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax.data import folds
from au_jax.data import device_transforms
from au_jax.data import input_pipeline
from au_jax import models
from au_jax import predict
from au_jax.predict import io as predict_io
from au_jax.predict import tracking
from au_jax import train
from configs import drml
from data_builders.bp4d import make_dummy_data as photos
from data_builders.synthetic_au import config as synth_config
from data_builders.synthetic_au import generate
from au_jax.predict import run as predict_run
from au_jax.predict import table as predict_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 8  # One compiled batch shape for every test.
FPS = 10.0
BLANK_FRAMES = (6, 7)  # 1-based frames of the video without faces.


# Per-AU decision thresholds written into the run's test_results.json.
THRESHOLDS = np.linspace(0.3, 0.7, 12)
RUN_WINDOW = 3  # The run's "tuned" median window, used unless --smooth.


@pytest.fixture(scope='module')
def run_dir(tiny_data_dir, tmp_path_factory):
  """A run directory as the trainer leaves it: config.json, a checkpoint
  (initial DRML `configs/drml.py:test` weights; training would only cost
  test time) and test_results.json with per-AU thresholds and a window."""
  config = drml.get_config('test')
  config.data_dir = tiny_data_dir
  config.folds = '1'
  directory = checkpointing.run_dir(
      config, str(tmp_path_factory.mktemp('work')), 1)
  os.makedirs(directory)
  checkpointing.write_config(config, directory)
  state = train.create_train_state(config, models.create(config),
                                   jax.random.key(0))
  manager = checkpointing.create_manager(directory)
  checkpointing.save(manager, 1, state, {}, checkpointing.fingerprint(config),
                     {checkpointing.BEST_METRIC: 1.0})
  manager.close()
  results = {'median_window': RUN_WINDOW, 'per_au': {
      str(au): {'threshold': t} for au, t in zip(config.aus, THRESHOLDS)}}
  with open(os.path.join(directory, 'test_results.json'), 'w') as f:
    json.dump(results, f)
  return directory


@pytest.fixture(scope='module')
def run(run_dir):
  return predict_run.load_run(run_dir)


def _synthetic_faces(subject: int = 0) -> list[np.ndarray]:
  """16 RGB 64x64 synthetic_au frames of one subject."""
  return [r['image'] for r in generate.render_subject(
      synth_config.get('tiny'), subject, encode=False)]


@pytest.fixture(scope='module')
def media(tmp_path_factory):
  """Paths of the test media (see module doc)."""
  folder = tmp_path_factory.mktemp('media')
  paths = {}
  photo, _ = photos.face_frame(320, 240, scale=0.5)
  paths['photo'] = str(folder / 'photo.jpg')
  cv2.imwrite(paths['photo'], photo)
  paths['blank'] = str(folder / 'blank.png')
  cv2.imwrite(paths['blank'], np.full((240, 320, 3), 120, np.uint8))
  # Several faces: the photo twice, side by side.
  paths['several'] = str(folder / 'several.png')
  cv2.imwrite(paths['several'], np.concatenate([photo, photo[:, ::-1]], 1))
  # Video: the photo drifting right on the left, a synthetic_au face on the
  # right, both gone in BLANK_FRAMES.
  faces = _synthetic_faces()
  paths['video'] = str(folder / 'video.mp4')
  writer = cv2.VideoWriter(paths['video'], cv2.VideoWriter_fourcc(*'mp4v'),
                           FPS, (480, 240))
  for index in range(1, 13):
    frame = np.full((240, 480, 3), 110, np.uint8)
    if index not in BLANK_FRAMES:
      frame[:, :240], _ = photos.face_frame(240, 240, shift=(index, 0),
                                            scale=0.45)
      face = cv2.resize(faces[index], (160, 160))[..., ::-1]
      frame[40:200, 300:460] = face
    writer.write(frame)
  writer.release()
  return paths


def _table(path):
  header, rows = predict_io.read_csv(path)
  return header, [dict(zip(header, row)) for row in rows]


def test_columns_follow_openface_order():
  assert predict_table.columns((1, 12)) == [
      'frame', 'face_id', 'timestamp', 'confidence', 'success', 'face_x',
      'face_y', 'face_width', 'face_height', 'AU01_c', 'AU12_c', 'AU01_p',
      'AU12_p', 'status', 'file']
  with_landmarks = predict_table.columns((1,), landmarks=True)
  # OpenFace's 2D landmark block sits between the box and the AUs.
  assert with_landmarks[9:11] == ['x_0', 'x_1']
  assert with_landmarks[77:79] == ['y_0', 'y_1']
  assert with_landmarks[145:] == ['AU01_c', 'AU01_p', 'status', 'file']
  assert predict_table.au_columns((4,), intensity=True) == ['AU04_r', 'AU04_c',
                                                      'AU04_p']


def test_iou_and_greedy_match_hand_computed():
  # 10x10 at (0, 0) and (5, 0): overlap 50, union 150.
  np.testing.assert_allclose(
      tracking.iou(np.array([[0, 0, 10, 10]]),
                   np.array([[5, 0, 10, 10], [20, 20, 5, 5]])),
      [[1 / 3, 0]])
  tracks = np.array([[0, 0, 10, 10], [50, 50, 10, 10]])
  boxes = np.array([[52, 50, 10, 10], [100, 0, 5, 5], [1, 0, 10, 10]])
  assert sorted(tracking.match(tracks, boxes, 0.3)) == [(0, 2), (1, 0)]


def test_video_rows_ids_timestamps_and_no_face_frames(run, media, tmp_path):
  options = predict.Options(batch_size=BATCH, smooth=1)
  result = predict.predict_file(media['video'], run, str(tmp_path), options)
  header, rows = _table(result.csv)
  assert header == predict_table.columns(run.aus, landmarks=True)
  assert result.frames == 12 and result.unreadable == 0
  by_frame = {}
  for row in rows:
    by_frame.setdefault(int(row['frame']), []).append(row)
  assert sorted(by_frame) == list(range(1, 13))  # Every frame has a row.
  for frame, frame_rows in by_frame.items():
    assert float(frame_rows[0]['timestamp']) == pytest.approx(
        (frame - 1) / FPS)
    if frame in BLANK_FRAMES:
      (row,) = frame_rows
      assert (row['success'], row['face_id'], row['status']) == (
          '0', '-1', 'no_face')
      assert all(row[c] == '' for c in predict_table.au_columns(run.aus))
      continue
    # Both faces, and each keeps its id (0: the photo, left) across the
    # blank gap.
    assert [(r['success'], r['status']) for r in frame_rows] == [
        ('1', 'ok'), ('1', 'ok')]
    ids = {r['face_id']: float(r['face_x']) for r in frame_rows}
    assert set(ids) == {'0', '1'} and ids['0'] < 240 < ids['1']
    for row in frame_rows:
      p = np.array([float(row[f'AU{a:02d}_p']) for a in run.aus])
      c = np.array([int(row[f'AU{a:02d}_c']) for a in run.aus])
      assert np.all((p >= 0) & (p <= 1))
      np.testing.assert_array_equal(c, p >= run.thresholds)
  assert result.tracks == 2 and len(rows) == 2 * 10 + 2


def test_median_smoothing_per_track(run, media, tmp_path):
  raw = predict.predict_file(media['video'], run, str(tmp_path / 'raw'),
                             predict.Options(batch_size=BATCH, smooth=1))
  smooth = predict.predict_file(media['video'], run, str(tmp_path / 's'),
                                predict.Options(batch_size=BATCH))  # Run: 3.
  _, raw_rows = _table(raw.csv)
  _, smooth_rows = _table(smooth.csv)
  columns = [f'AU{a:02d}_p' for a in run.aus]
  for face_id in ('0', '1'):
    before = np.array([[float(r[c]) for c in columns] for r in raw_rows
                       if r['face_id'] == face_id])
    after = np.array([[float(r[c]) for c in columns] for r in smooth_rows
                      if r['face_id'] == face_id])
    # By hand: window 3 over the track's own rows, ends repeated.
    padded = np.concatenate([before[:1], before, before[-1:]])
    expected = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]),
                         axis=0)
    np.testing.assert_allclose(after, expected, rtol=1e-5)
    assert len(after) == 10


def test_images_no_face_and_several_faces(run, media, tmp_path):
  options = predict.Options(batch_size=BATCH)
  single = predict.predict_file(media['photo'], run, str(tmp_path), options)
  _, rows = _table(single.csv)
  assert [(r['frame'], r['face_id'], r['success'], r['timestamp'])
          for r in rows] == [('1', '0', '1', '0')]
  # The face box is in frame pixels: half the box the same detector finds
  # in the photo at scale 1 (the frame holds it at scale 0.5).
  box = [float(rows[0][k]) for k in predict_table.BOX_COLUMNS]
  full, _ = photos.face_frame(640, 480, scale=1.0)
  boxes, _, _ = tracking.detect_faces(full)
  assert len(boxes) == 1
  np.testing.assert_allclose(box[2], boxes[0][2] * 0.5, atol=6)
  blank = predict.predict_file(media['blank'], run, str(tmp_path), options)
  _, rows = _table(blank.csv)
  assert [(r['success'], r['face_id'], r['AU01_p'], r['status'])
          for r in rows] == [('0', '-1', '', 'no_face')]
  several = predict.predict_file(media['several'], run, str(tmp_path),
                                 options)
  _, rows = _table(several.csv)
  assert [(r['face_id'], r['success']) for r in rows] == [('0', '1'),
                                                          ('1', '1')]


def test_predictions_equal_evaluation_pipeline(run, tiny_data_dir, tmp_path):
  config = run.config
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, 1)
  records = builder.as_data_source(
      split=folds.split_spec(data.subjects.test))
  count = 16
  folder = tmp_path / 'frames'
  folder.mkdir()
  for i in range(count):
    cv2.imwrite(str(folder / f'{i:04d}.png'), records[i]['image'][..., ::-1])
  expected = []
  for batch in input_pipeline.eval_batches(config, data, 'test', None):
    # The trainer's eval step: uint8 faces centre-cropped and normalised on
    # the device (device_transforms), then the model.
    model_batch = device_transforms.eval_preprocess(
        {k: batch[k] for k in ('image', 'landmarks')}, config)
    logits, _ = run.model.apply(run.variables, model_batch, train=False)
    expected.append(np.asarray(jax.nn.sigmoid(logits))[batch['mask']])
  expected = np.concatenate(expected)[:count]
  result = predict.predict_file(
      str(folder), run, str(tmp_path / 'out'),
      predict.Options(faces='full_frame', batch_size=BATCH, smooth=1))
  _, rows = _table(result.csv)
  got = np.array([[float(r[f'AU{a:02d}_p']) for a in run.aus] for r in rows])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert [os.path.basename(r['file']) for r in rows][:2] == ['0000.png',
                                                             '0001.png']


def test_calibration_moves_track_baseline_to_floor(run):
  num_aus = len(run.aus)
  dtype = predict_table.raw_dtype(num_aus)  # pylint: disable=protected-access
  raw = np.zeros(40, dtype)
  raw['face_id'] = np.r_[np.zeros(30), np.ones(10)]
  raw['success'] = 1
  logits = np.linspace(-1, 3, 30)[:, None] + np.arange(num_aus)
  raw['logits'][:30] = logits
  raw['logits'][30:] = 2.0
  options = predict.Options(calibrate=True)
  out = predict_table.post_process(  # pylint: disable=protected-access
      raw, run, options, np.ones(num_aus, int), '/tmp')
  # Track 0 (30 frames): its 10th-percentile logit maps to logit(0.05).
  shift = np.percentile(logits, 10, axis=0) - np.log(0.05 / 0.95)
  np.testing.assert_allclose(out[:30], 1 / (1 + np.exp(-(logits - shift))),
                             rtol=1e-5)
  # Track 1 has 10 < 25 frames: left as it is.
  np.testing.assert_allclose(out[30:], 1 / (1 + np.exp(-2.0)), rtol=1e-6)


def test_bad_checkpoint_is_one_line_error(run_dir, tmp_path):
  with pytest.raises(ValueError, match='not an au_jax run directory'):
    predict_run.load_run(str(tmp_path))
  with pytest.raises(ValueError, match='does not exist'):
    predict_run.load_run(str(tmp_path / 'missing'))
  # A config but no finished step (a run killed before its first save).
  (tmp_path / 'config.json').write_text(
      open(os.path.join(run_dir, 'config.json')).read())
  with pytest.raises(ValueError, match='no checkpoints/'):
    predict_run.load_run(str(tmp_path))
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(ValueError, match='no finished checkpoint'):
    predict_run.load_run(str(tmp_path))


def test_weights_only_run_loads_its_best_weights(run, run_dir, tmp_path):
  """A finished run that kept weights only (config.keep_weights_only, as
  AUNets' per-AU runs do: best_weights/, no checkpoints/) is predictable."""
  directory = tmp_path / 'run'
  directory.mkdir()
  for name in ('config.json', 'test_results.json'):
    (directory / name).write_text(open(os.path.join(run_dir, name)).read())
  params = jax.tree.map(lambda x: np.asarray(x) + 1.0,
                        run.variables['params'])
  checkpointing.save_weights_only(
      str(directory), {'params': params,
                       'batch_stats': run.variables['batch_stats']}, 5, {}, 5)
  loaded = predict_run.load_run(str(directory))
  jax.tree.map(np.testing.assert_array_equal, loaded.variables['params'],
               params)


def test_run_decision_rule_is_read(run):
  np.testing.assert_allclose(run.thresholds, THRESHOLDS)
  np.testing.assert_array_equal(run.median_windows, RUN_WINDOW)
  assert (run.face_options.image_size, run.face_options.mode) == (64, 'crop')


def test_cli_bad_inputs_do_not_stop_good_ones(run_dir, media, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  corrupt = tmp_path / 'corrupt.mp4'
  corrupt.write_bytes(b'not a video' * 100)
  zero = tmp_path / 'zero.jpg'
  zero.write_bytes(b'')
  frames = tmp_path / 'frames'
  frames.mkdir()
  (frames / 'notes.txt').write_text('not an image')
  cv2.imwrite(str(frames / '0001.png'), cv2.imread(media['photo']))
  # All inputs side by side: each CSV is named by its stem.
  for name in ('photo', 'several'):
    shutil.copy(media[name], tmp_path)
  out = tmp_path / 'out'
  command = [sys.executable, '-m', 'au_jax.predict', f'--checkpoint={run_dir}',
             f'--input={tmp_path / "photo.jpg"}',
             f'--input={tmp_path / "nope.mp4"}', f'--input={empty}',
             f'--input={corrupt}', f'--input={zero}', f'--input={frames}',
             f'--input={tmp_path / "several.png"}', f'--output_dir={out}',
             '--plot', '--annotate', f'--batch_size={BATCH}']
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  done = subprocess.run(command, capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=300, check=False)
  assert done.returncode == 1, done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  errors = [l for l in done.stderr.splitlines() if l.startswith('predict:')]
  # Inputs that cannot be used are named before any is predicted.
  assert errors == [
      f'predict: {tmp_path / "nope.mp4"}: Input {tmp_path / "nope.mp4"} '
      'does not exist.',
      f'predict: {empty}: Folder {empty} holds no images (.png, .jpg, '
      '.jpeg, .bmp, .tif, .tiff, .webp).',
      f'predict: {frames}: skipped 1 non-image entry: notes.txt',
      f'predict: {corrupt}: OpenCV cannot open video {corrupt} (corrupt or '
      'codec missing).',
      f'predict: {zero}: unreadable: empty file (0 bytes)',
  ], done.stderr[-2000:]
  # Quiet by default: no checkpoint INFO chatter, no progress bar (stderr
  # is not a terminal); the run's own warning stays.
  assert 'checkpoint' not in done.stderr.replace(run_dir, '')
  assert 'frame/s]' not in done.stderr
  for name in ('photo.csv', 'several.csv', 'zero.csv', 'frames.csv',
               'photo_aus.png', 'several_annotated.png'):
    assert (out / name).exists(), name
  assert [(r['success'], r['status']) for r in _table(out / 'zero.csv')[1]
          ] == [('0', 'unreadable')]
  assert [line.split(':')[0] for line in done.stdout.splitlines()] == [
      str(out / f'{n}.csv') for n in ('photo', 'zero', 'frames', 'several')]
  annotated = cv2.imread(str(out / 'several_annotated.png'))
  original = cv2.imread(media['several'])
  assert annotated.shape == original.shape
  assert np.abs(annotated.astype(int) - original).sum() > 0  # Boxes drawn.


def test_dataframe_api_matches_csv(run_dir, media, tmp_path):
  pd = pytest.importorskip('pandas')
  zero = tmp_path / 'zero.jpg'
  zero.write_bytes(b'')
  missing = str(tmp_path / 'missing.png')
  table = predict.predict([media['photo'], media['blank'], str(zero),
                           missing], run_dir,
                          output_dir=str(tmp_path / 'out'), batch_size=BATCH)
  assert isinstance(table, pd.DataFrame)
  assert list(table.columns) == ['input'] + predict_table.columns(
      predict_run.load_config(run_dir).aus, landmarks=True)
  assert list(table['input']) == [media['photo'], media['blank'], str(zero)]
  assert list(table['success']) == [1, 0, 0]
  assert list(table['status']) == ['ok', 'no_face', 'unreadable']
  assert np.isnan(table['AU01_p'][1])
  assert table.attrs['errors'] == {
      missing: f'Input {missing} does not exist.',
      str(zero): 'unreadable: empty file (0 bytes)'}
  # Same values as the CSV written for the photo.
  _, rows = _table(table.attrs['results'][0].csv)
  assert float(rows[0]['AU01_p']) == pytest.approx(table['AU01_p'][0],
                                                   rel=1e-5)


def test_gray_and_four_channel_images_are_read_as_colour(run, media,
                                                         tmp_path):
  """Wrong channel count at predict time: a grayscale or RGBA photo is
  converted to 3 channels when read, found and scored like the colour one."""
  photo = cv2.imread(media['photo'], cv2.IMREAD_COLOR)
  gray_path = str(tmp_path / 'gray.png')
  rgba_path = str(tmp_path / 'rgba.png')
  cv2.imwrite(gray_path, cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
  cv2.imwrite(rgba_path, cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA))
  options = predict.Options(batch_size=BATCH)
  colour = _table(predict.predict_file(media['photo'], run, str(tmp_path),
                                       options).csv)[1]
  rgba = _table(predict.predict_file(rgba_path, run, str(tmp_path),
                                     options).csv)[1]
  gray = _table(predict.predict_file(gray_path, run, str(tmp_path),
                                     options).csv)[1]
  assert [r['success'] for r in gray] == ['1']
  # Alpha dropped: the same pixels, the same probabilities.
  assert [r['AU01_p'] for r in rgba] == [r['AU01_p'] for r in colour]
