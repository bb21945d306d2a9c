"""Build faults injected on copies of the builders' dummy_data.

Each test damages a copy of `data_builders/<name>/dummy_data` (or injects a
worker fault through the `build_runners.FAULT_ENV` test hook) and asserts the named
error or the counted, named skip, and that nothing is left behind. Every
build runs under an alarm: a build that hangs fails the test instead of
hanging the suite. docs/faults_builds.md maps each fault to its test.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from au_jax import prepare
from au_jax.preprocess import video
from au_jax.preprocess import build_runners
from data_builders.synthetic_au import config as config_lib
from data_builders.synthetic_au import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dummy_copy(tmp_path, name):
  root = tmp_path / name
  shutil.copytree(os.path.join(ROOT, 'data_builders', name, 'dummy_data'),
                  root)
  return root


def leftovers(data_dir, name):
  """Scratch and incomplete folders, and finished builds, in data_dir."""
  return (prepare.stale_scratch(str(data_dir), name),
          glob.glob(os.path.join(str(data_dir), name, '*', '*',
                                 'dataset_info.json')))


@pytest.fixture(autouse=True)
def no_hang():
  """Fails (instead of hanging) any test still running after 120 s."""
  def alarm(signum, frame):
    raise TimeoutError('build did not finish in 120 s: it hangs')
  previous = signal.signal(signal.SIGALRM, alarm)
  signal.alarm(120)
  yield
  signal.alarm(0)
  signal.signal(signal.SIGALRM, previous)


def build(name, manual_dir, data_dir, monkeypatch, workers='0',
          config='tiny', fault=None):
  monkeypatch.setenv('AU_JAX_BUILD_WORKERS', workers)
  if fault:
    monkeypatch.setenv(build_runners.FAULT_ENV, fault)
  return prepare.prepare(name, config, str(data_dir), str(manual_dir))


def rows(builder, split):
  source = builder.as_data_source(split=split)
  return [source[i] for i in range(len(source))]


# --- Workers: killed, raising, failing writes, unimportable main module.


def test_killed_worker_ends_build_naming_subject(tmp_path, monkeypatch):
  out = tmp_path / 'out'
  with pytest.raises(build_runners.BuildWorkerError,
                     match='subject M009 .*killed by SIGKILL'):
    build('bp4d', dummy_copy(tmp_path, 'bp4d'), out, monkeypatch,
          workers='2', fault='M009:kill')
  assert leftovers(out, 'bp4d') == ([], [])


@pytest.mark.parametrize('fault, message', [
    ('raise', 'subject F001 .*RuntimeError: injected fault'),
    ('nospace', 'subject F001 .*No space left on device'),
])
def test_failing_worker_keeps_earlier_build(tmp_path, monkeypatch, fault,
                                            message):
  """A worker error (or a full disk) names the subject; the dataset built
  before into the same data_dir is untouched."""
  root, out = dummy_copy(tmp_path, 'bp4d'), tmp_path / 'out'
  before = rows(build('bp4d', root, out, monkeypatch), 'F001')
  with pytest.raises(build_runners.BuildWorkerError, match=message):
    build('bp4d', root, out, monkeypatch, workers='2', config='tiny_aligned',
          fault=f'F001:{fault}')
  scratch, built = leftovers(out, 'bp4d')
  assert scratch == [] and len(built) == 1 and '/tiny/' in built[0]
  after = rows(prepare.get_builder('bp4d', 'tiny', str(out)), 'F001')
  assert [int(r['frame_index']) for r in after] == [
      int(r['frame_index']) for r in before]
  np.testing.assert_array_equal(after[0]['image'], before[0]['image'])


def test_script_on_stdin_builds_with_workers(tmp_path):
  """`python - < build.py`: workers do not re-import the main module
  ('<stdin>', not a file), so the build runs as from a saved script."""
  root, out = dummy_copy(tmp_path, 'bp4d'), tmp_path / 'out'
  script = textwrap.dedent(f"""
      from au_jax import prepare
      prepare.prepare('bp4d', 'tiny', {str(out)!r}, {str(root)!r})
  """)
  env = dict(os.environ, AU_JAX_BUILD_WORKERS='2', PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, '-'], input=script, env=env,
                          capture_output=True, text=True, timeout=110,
                          cwd=tmp_path, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Built bp4d/tiny/1.1.0: 9 frames in 2 subject splits' in (
      result.stdout)
  scratch, built = leftovers(out, 'bp4d')
  assert scratch == [] and len(built) == 1


def test_synthetic_render_worker_killed_is_an_error(monkeypatch):
  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv(build_runners.FAULT_ENV, 'S02:kill')
  config = config_lib.get('tiny')
  with pytest.raises(RuntimeError, match='render worker died.*S02'):
    list(generate.render_subjects(config, [0, 1], workers=2))


# --- Interruption and stale scratch.


def test_interrupted_build_removes_its_scratch(tmp_path, monkeypatch):
  def interrupt(self, example):
    raise KeyboardInterrupt
  monkeypatch.setattr(build_runners.BuildStats, 'add', interrupt)
  out = tmp_path / 'out'
  with pytest.raises(KeyboardInterrupt):
    build('bp4d', dummy_copy(tmp_path, 'bp4d'), out, monkeypatch,
          workers='2')
  assert leftovers(out, 'bp4d') == ([], [])


def test_next_build_removes_stale_scratch_and_says_so(tmp_path, monkeypatch,
                                                       caplog):
  out = tmp_path / 'out'
  stale = [out / '.bp4d_frames_k1ll3d', out / 'bp4d' / 'tiny' /
           'incomplete.ABC123_1.0.0', out / 'bp4d' / 'aligned' /
           'incomplete.XYZ789_1.0.0']
  for folder in stale:
    folder.mkdir(parents=True)
    (folder / '0.pkl').write_bytes(b'half')
  other = out / '.disfa_frames_live'  # Another dataset's: not ours to touch.
  other.mkdir()
  build('bp4d', dummy_copy(tmp_path, 'bp4d'), out, monkeypatch)
  assert not any(folder.exists() for folder in stale) and other.exists()
  lines = [r.getMessage() for r in caplog.records
           if 'stale scratch' in r.getMessage()]
  assert len(lines) == 1 and 'Removed 3 stale' in lines[0]
  assert all(str(folder) in lines[0] for folder in stale)


# --- Damaged frames.


def test_truncated_jpeg_is_a_named_skip_or_an_error(tmp_path, monkeypatch,
                                                    capsys):
  root = dummy_copy(tmp_path, 'bp4d')
  image = root / 'Sequences' / 'F001' / 'T1' / '0002.jpg'
  data = image.read_bytes()
  image.write_bytes(data[:len(data) // 2])
  # OpenCV alone would store it: it fills the missing half with grey.
  assert cv2.imread(str(image)) is not None
  with pytest.raises(ValueError, match=r'subject F001: 1 of 6 frames are '
                     r'damaged.*F001/T1 frame 2.*no end-of-image marker'):
    build('bp4d', root, tmp_path / 'strict', monkeypatch)
  assert leftovers(tmp_path / 'strict', 'bp4d') == ([], [])
  monkeypatch.setenv('AU_JAX_MAX_DAMAGED_FRACTION', '0.5')
  capsys.readouterr()
  builder = build('bp4d', root, tmp_path / 'lenient', monkeypatch)
  summary = capsys.readouterr().out
  assert "'skipped_damaged_frame': 1" in summary
  assert 'damaged frame F001/T1 frame 2' in summary and '0002.jpg' in summary
  numbers = [(r['sequence'].decode(), int(r['frame_index']))
             for r in rows(builder, 'F001')]
  # Frame 5 of T1 is uncoded in the dummy labels, so never stored.
  assert numbers == [('T1', 1), ('T1', 3), ('T1', 4), ('T2', 10), ('T2', 11)]


def test_image_damage_checks_end_markers():
  image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8)
  png = video.encode_image(image, 'png')
  jpeg = video.encode_image(image, 'jpeg')
  assert video.image_damage(png) is None
  assert video.image_damage(jpeg + b'\x00\x00') is None  # Zero padding.
  assert 'IEND' in video.image_damage(png[:-20])
  assert 'FFD9' in video.image_damage(jpeg[:-1])
  assert video.image_damage(b'') == 'empty file'


def test_truncated_video_frames_are_named_skips(tmp_path, monkeypatch,
                                                capsys):
  root = dummy_copy(tmp_path, 'disfa')
  path = root / 'Video_LeftCamera' / 'LeftVideoSN001_comp.avi'
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  readable = [f is not None for f, _ in video.checked_video_frames(str(path))]
  assert len(readable) == 6 and 0 < sum(readable) < 6
  monkeypatch.setenv('AU_JAX_MAX_DAMAGED_FRACTION', '1')
  builder = build('disfa', root, tmp_path / 'out', monkeypatch)
  summary = capsys.readouterr().out
  sn001 = rows(builder, 'SN001')
  # Undecoded frames are never stored; decoded ones keep their label row.
  assert [int(r['frame_index']) for r in sn001] == [
      i + 1 for i, ok in enumerate(readable) if ok]
  for missing in [i + 1 for i, ok in enumerate(readable) if not ok]:
    assert (f'damaged frame SN001 frame {missing} ({path}): the video frame '
            'failed to decode') in summary


# --- Labels and layout.


def edit(path, old, new):
  text = path.read_text()
  assert old in text
  path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize('name, file, old, new, message', [
    ('bp4d', 'AUCoding/AU_OCC/F001_T1.csv', '\n2,0,0,', '\n2,0.5,0,',
     r'F001_T1.csv line 3: AU1 code .0.5. is not an integer'),
    ('bp4d', 'AUCoding/AU_OCC/F001_T1.csv', '0,1,2,3,4,5,6,7,8,9,10,', '',
     r'F001_T1.csv line 1: unexpected first line'),
    ('bp4d', 'AUCoding/AU_OCC/M009_T1.csv', 'Frame,', '3,',
     r'M009_T1.csv line 1: unexpected first line'),
    ('bp4d', 'AUCoding/AU_OCC/F001_T2.csv', '\n11,', '\n10,',
     r'F001_T2.csv line 3: frame 10 follows frame 10'),
    ('disfa', 'ActionUnit_Labels/SN001/SN001_au4.txt', '\n3,', '\n4,',
     r'SN001_au4.txt line 3: frame 4 follows frame 2; frame numbers must '
     r'rise by 1'),
    ('disfa', 'ActionUnit_Labels/SN003/SN003_au1.txt', '1,', 'frame,au\n1,',
     r'SN003_au1.txt line 1: frame number .frame. is not an integer'),
    ('disfa', 'ActionUnit_Labels/SN001/SN001_au2.txt', '\n2,', '\n2.5,',
     r'SN001_au2.txt line 2: frame number .2.5. is not an integer'),
    ('fera2017', 'Train_Occ/FERA17_TR_M009_T6.csv', '\n2,', '\n3,',
     r'FERA17_TR_M009_T6.csv line 3: frame 3 follows frame 1'),
    ('fera2017', 'Train_Occ/FERA17_TR_F001_T1.csv', '\n3,0,0,1,', '\n3,0,0,x,',
     r'FERA17_TR_F001_T1.csv line 4: AU6 code .x. is not an integer'),
])
def test_label_file_faults_name_file_and_line(tmp_path, monkeypatch, name,
                                              file, old, new, message):
  root = dummy_copy(tmp_path, name)
  edit(root / file, old, new)
  with pytest.raises(ValueError, match=message):
    build(name, root, tmp_path / 'out', monkeypatch)
  assert leftovers(tmp_path / 'out', name) == ([], [])


def test_missing_bp4d_label_file_is_named(tmp_path, monkeypatch, capsys):
  root = dummy_copy(tmp_path, 'bp4d')
  (root / 'AUCoding' / 'AU_OCC' / 'F001_T2.csv').unlink()
  builder = build('bp4d', root, tmp_path / 'out', monkeypatch)
  summary = capsys.readouterr().out
  assert 'sequence F001/T2 not built: no label file' in summary
  assert 'F001_T2.csv' in summary
  assert "'skipped_sequence_without_label_file': 1" in summary
  assert {r['sequence'].decode() for r in rows(builder, 'F001')} == {'T1'}


def test_video_label_length_named_and_blank_frame_not_a_face(
    tmp_path, monkeypatch, capsys):
  root = dummy_copy(tmp_path, 'disfa')
  # Landmarks for SN001's blank frame 4: they must not make it a face.
  lm = root / 'Landmark_Points' / 'SN001' / 'frame_lm'
  shutil.copy(lm / 'l0003_lm.mat', lm / 'l0004_lm.mat')
  builder = build('disfa', root, tmp_path / 'out', monkeypatch)
  summary = capsys.readouterr().out
  video_path = root / 'Video_LeftCamera' / 'LeftVideoSN003_comp.avi'
  assert (f'SN003: video {video_path} has 6 frames, label file '
          f'{root / "ActionUnit_Labels" / "SN003"} has 5 rows') in summary
  assert 'SN003_au26.txt has 4 lines, the longest AU file of this subject 5' \
      in summary
  sn001 = rows(builder, 'SN001')
  assert [bool(r['face_found']) for r in sn001] == [
      True, True, True, False, True, True]
  assert (sn001[3]['landmarks'] == -1).all()
  assert "'blank_frame': 1" in summary
