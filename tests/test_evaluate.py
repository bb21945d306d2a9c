"""Tests of au_jax.evaluate and au_jax.visualize (hand-computed values)."""

import json
import os

import numpy as np
import pytest

from au_jax import evaluate
from au_jax import metrics
from au_jax import visualize
from au_jax import postprocess
from au_jax import tables
from au_jax import parallel

AUS = (1, 2)
# 4 frames x 2 AUs. AU1: positives at rows 0, 1; AU2: row 2 unknown.
LABELS = np.array([[1, 0], [1, 1], [0, -1], [0, 0]])
PROBABILITIES = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.9], [0.1, 0.5]])


def test_compute_metrics_by_hand():
  results = evaluate.compute_metrics(LABELS, PROBABILITIES, AUS)
  per_au = lambda key: tables.per_au_values(results, key)
  # AU1 at 0.5: tp row 0, fn row 1, fp row 2, tn row 3 -> F1 50, acc 50.
  # AU2: tp row 1, fp row 3 (0.5 >= 0.5), tn row 0 -> F1 2/3, acc 2/3.
  np.testing.assert_allclose(per_au('f1'), [50.0, 200 / 3])
  np.testing.assert_allclose(per_au('accuracy'), [50.0, 200 / 3])
  # AU1 ranks: positives 0.9, 0.4 vs negatives 0.6, 0.1 -> 3 of 4 pairs.
  np.testing.assert_allclose(per_au('auc'), [75.0, 100.0])
  np.testing.assert_allclose(per_au('positive_rate'), [0.5, 1 / 3])
  # All-positive F1 = 2r / (1 + r).
  np.testing.assert_allclose(per_au('baseline_f1'), [200 / 3, 50.0])
  assert results['per_au']['2']['num_labelled'] == 3
  assert results['per_au']['1']['threshold'] == 0.5
  assert results['num_frames'] == 4
  np.testing.assert_allclose(results['mean']['f1'], (50 + 200 / 3) / 2)
  np.testing.assert_allclose(results['mean']['auc'], 87.5)
  np.testing.assert_array_equal(results['labels'], LABELS)


def test_per_au_thresholds_and_errors():
  results = evaluate.compute_metrics(LABELS, PROBABILITIES, AUS,
                                     threshold=[0.35, 0.6])
  # AU1 at 0.35: tp rows 0, 1, fp row 2 -> 4/5; AU2 at 0.6: tp, tn, tn -> 1.
  np.testing.assert_allclose(tables.per_au_values(results, 'f1'),
                             [80.0, 100.0])
  with pytest.raises(ValueError, match=r'\[N, 3\]'):
    evaluate.compute_metrics(LABELS, PROBABILITIES, (1, 2, 4))
  with pytest.raises(ValueError, match='unknown AU id 3'):
    evaluate.compute_metrics(LABELS, PROBABILITIES, (1, 3))
  with pytest.raises(ValueError, match='per-AU'):
    evaluate.compute_metrics(LABELS, PROBABILITIES, AUS, [0.5, 0.5, 0.5])
  broken = PROBABILITIES.copy()
  broken[2, 1] = np.nan
  with pytest.raises(ValueError, match=r'1 probabilities are nan.*\(2, 1\)'):
    evaluate.compute_metrics(LABELS, broken, AUS)


def test_evaluate_ignores_padding_rows_and_keeps_raw_arrays():
  # Two batches of 3; the last is padded with a garbage row.
  batches = [
      {'au_occurrence': LABELS[:3], 'mask': np.array([True] * 3),
       'sequence': np.array([b'a', b'a', b'b'], object),
       'frame_index': np.array([0, 1, 0])},
      {'au_occurrence': np.array([[0, 0], [1, 1], [1, 1]]),
       'mask': np.array([True, False, False]),
       'sequence': np.array([b'b', b'', b''], object),
       'frame_index': np.array([1, 0, 0])},
  ]
  padded_probabilities = np.concatenate([PROBABILITIES, [[0.0, 0.0]] * 2])
  calls = iter([padded_probabilities[:3], padded_probabilities[3:]])
  results = evaluate.evaluate(lambda batch: next(calls), batches, AUS)
  expected = evaluate.compute_metrics(LABELS, PROBABILITIES, AUS)
  assert results['per_au'] == expected['per_au']
  assert results['num_frames'] == 4
  np.testing.assert_array_equal(results['sequence'], ['a', 'a', 'b', 'b'])
  np.testing.assert_array_equal(results['frame_index'], [0, 1, 0, 1])
  assert 'subject' not in results


def test_tune_thresholds_matches_brute_force():
  rng = np.random.default_rng(0)
  labels = rng.integers(-1, 2, size=(60, 3))
  labels[:, 2] = np.where(labels[:, 2] == 1, 0, labels[:, 2])  # no positives
  scores = np.round(rng.random((60, 3)) * 0.7 + 0.3 * (labels == 1), 2)
  thresholds = postprocess.tune_thresholds(labels, scores, min_positives=1,
                                        grid=())
  for c in range(2):
    candidates = np.unique(scores[labels[:, c] >= 0, c])
    f1 = [metrics.f1_frame(labels[:, c:c + 1], scores[:, c:c + 1] >= t)[0]
          for t in candidates]
    best = candidates[np.flatnonzero(np.isclose(f1, max(f1)))].max()
    assert thresholds[c] == best
  assert thresholds[2] == 0.5


def test_median_smooth_stays_inside_each_video():
  sequence = np.array(['a'] * 5 + ['b'] * 3)
  predictions = np.array([1, 1, 1, 0, 1, 0, 1, 1])[:, None]
  smoothed = postprocess.median_smooth(predictions, sequence, 3)
  # a padded: 1 | 1 1 1 0 1 | 1 -> all 1 (its last frame sees (0, 1, 1),
  # not (0, 1, 0) with b's first frame); b padded: 0 | 0 1 1 | 1.
  np.testing.assert_array_equal(smoothed[:, 0], [1, 1, 1, 1, 1, 0, 1, 1])
  # Interleaved videos give the same per-video result.
  order = np.array([0, 5, 1, 6, 2, 7, 3, 4])
  np.testing.assert_array_equal(
      postprocess.median_smooth(predictions[order], sequence[order], 3),
      smoothed[order])
  probabilities = np.array([[0.1], [0.9], [0.2], [0.3], [0.8]])
  np.testing.assert_allclose(
      postprocess.median_smooth(probabilities, np.zeros(5), 5)[:, 0],
      [0.1, 0.2, 0.3, 0.8, 0.8])  # padded 0.1 0.1 | 0.1 .. 0.8 | 0.8 0.8
  assert postprocess.median_smooth(predictions, sequence, 1).tolist() == \
      predictions.tolist()
  with pytest.raises(ValueError, match='>= 1'):
    postprocess.median_smooth(predictions, sequence, 0)


def test_median_smooth_even_window_by_hand():
  # Window 4 at frame t covers t-2, t-1, t, t+1 (edges repeated) and takes
  # the upper middle of the 4 sorted values.
  values = np.array([0, 0, 1, 1, 0, 1, 0])[:, None]
  # padded: 0 0 | 0 0 1 1 0 1 0 | 0
  # t=0: 0 0 0 0 -> 0   t=1: 0 0 0 1 -> 0   t=2: 0 0 1 1 -> 1
  # t=3: 0 1 1 0 -> 1   t=4: 1 1 0 1 -> 1   t=5: 1 0 1 0 -> 1
  # t=6: 0 1 0 0 -> 0
  np.testing.assert_array_equal(
      postprocess.median_smooth(values, np.zeros(7), 4)[:, 0],
      [0, 0, 1, 1, 1, 1, 0])
  # The paper's 10: a 5-5 tie is positive; a 4-6 split is not.
  tie = np.array([1] * 5 + [0] * 5)[:, None]
  smoothed = postprocess.median_smooth(tie, np.zeros(10), 10)[:, 0]
  # t=4 covers (edge-padded) frames -1..8: 1 1 1 1 1 1 0 0 0 0 -> 1;
  # t=5 covers 0..9: five 1s, five 0s -> 1; t=6 covers 1..10(=9): four
  # 1s, six 0s -> 0.
  assert smoothed[4:7].tolist() == [1, 1, 0]
  assert smoothed.dtype == tie.dtype
  probabilities = np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.4])[:, None]
  # Window 2 at t covers t-1, t: the larger of the two.
  np.testing.assert_allclose(
      postprocess.median_smooth(probabilities, np.zeros(6), 2)[:, 0],
      [0.1, 0.9, 0.9, 0.3, 0.8, 0.8])
  # Equal to scipy.ndimage's median filter (edge mode) on one video.
  ndimage = pytest.importorskip('scipy.ndimage')
  rng = np.random.default_rng(0)
  scores = rng.random((23, 2))
  for window in postprocess.MEDIAN_WINDOWS:
    np.testing.assert_allclose(
        postprocess.median_smooth(scores, np.zeros(23), window),
        ndimage.median_filter(scores, size=(window, 1), mode='nearest'))


def test_median_windows_are_the_papers():
  assert postprocess.MEDIAN_WINDOWS == (3, 5, 7, 9, 10, 11)
  labels = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0])[:, None]
  scores = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0], float)[:, None]
  best, scored = postprocess.tune_median_window(
      labels, scores, np.array([0.5]), np.zeros(12))
  assert sorted(scored) == [3, 5, 7, 9, 10, 11]
  # Window 3 fills the lone 0 at frame 4: F1 of the labels vs that.
  assert scored[3] == pytest.approx(100 * 2 * 7 / (7 + 8))
  assert best == 3


def _fold(f1, auc, frames):
  per_au = {str(au): {'f1': f1[c], 'accuracy': [50.0, 60.0][c],
                      'auc': auc[c], 'average_precision': [40.0, 30.0][c],
                      'baseline_f1': [20.0, 30.0][c],
                      'positive_rate': [0.1, 0.2][c],
                      'num_labelled': [10, 9][c], 'threshold': 0.5}
            for c, au in enumerate(AUS)}
  return {'aus': list(AUS), 'num_frames': frames, 'per_au': per_au,
          'mean': {'f1': float(np.mean(f1)), 'accuracy': 55.0,
                   'auc': float(np.nanmean(auc)),
                   'average_precision': 35.0, 'baseline_f1': 25.0},
          'labels': np.zeros((frames, 2))}


def _cross_fold():
  return evaluate.cross_fold(
      {2: _fold([30.0, 50.0], [70.0, np.nan], 10),
       1: _fold([40.0, 70.0], [80.0, 60.0], 12)}, AUS)


def test_cross_fold_means():
  table = _cross_fold()
  np.testing.assert_allclose(tables.per_au_values(table, 'f1'),
                             [35.0, 60.0])
  # A nan AUC (one-class AU in a fold) is left out of that AU's mean.
  np.testing.assert_allclose(tables.per_au_values(table, 'auc'),
                             [75.0, 60.0])
  assert table['per_au']['2']['num_labelled'] == 18
  np.testing.assert_allclose(table['mean']['f1'], 47.5)
  np.testing.assert_allclose(table['std_mean_f1'], 7.5)
  assert table['num_frames'] == 22
  assert list(table['folds']) == [1, 2]
  assert 'labels' not in table['folds'][1]
  with pytest.raises(ValueError, match='fold 1'):
    evaluate.cross_fold({1: _fold([1.0, 2.0], [1.0, 2.0], 1)}, (1, 4))


def test_markdown_table():
  expected = '\n'.join([
      '| AU | F1 fold 1 | F1 fold 2 | F1 mean | Acc | AUC | AP | All-pos F1 |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      '| AU1 | 40.0 | 30.0 | 35.0 | 50.0 | 75.0 | 40.0 | 20.0 |',
      '| AU2 | 70.0 | 50.0 | 60.0 | 60.0 | 60.0 | 30.0 | 30.0 |',
      '| **mean** | 55.0 | 40.0 | 47.5 | 55.0 | 67.5 | 35.0 | 25.0 |'])
  assert tables.markdown_table(_cross_fold(), AUS) == expected
  single = evaluate.compute_metrics(LABELS, PROBABILITIES, AUS)
  lines = tables.markdown_table(single, AUS).splitlines()
  assert lines[0] == '| AU | F1 | Acc | AUC | AP | All-pos F1 |'
  # AU1 AP: ranked P (0.9), N, P (0.4), N -> (1 + 2/3) / 2 = 83.3.
  assert lines[2] == '| AU1 | 50.0 | 50.0 | 75.0 | 83.3 | 66.7 |'
  text = tables.format_table(single, AUS)
  assert 'mean' in text and '4 frames' in text
  with pytest.raises(ValueError, match='not'):
    tables.markdown_table(single, (1, 4))


def test_write_results_round_trip(tmp_path):
  results = evaluate.compute_metrics(
      np.array([[1, 1], [1, 0]]), np.array([[0.9, 0.2], [0.7, 0.1]]), AUS)
  results['sequence'] = np.array(['a', 'b'])
  json_path, md_path = tables.write_results(results, str(tmp_path), 'test')
  with open(json_path) as f:
    loaded = json.load(f)  # strict JSON: nan written as null
  assert loaded['per_au']['1']['auc'] is None  # one class only
  assert loaded['per_au']['2']['auc'] == 100.0
  assert 'labels' not in loaded
  with open(md_path) as f:
    assert f.read() == tables.markdown_table(results, AUS) + '\n'
  # A JSON-loaded result renders the same table.
  assert tables.markdown_table(loaded, AUS) == tables.markdown_table(
      results, AUS)
  raw = np.load(os.path.join(tmp_path, 'test_predictions.npz'))
  np.testing.assert_array_equal(raw['labels'], [[1, 1], [1, 0]])
  assert raw['sequence'].tolist() == ['a', 'b']
  assert sorted(os.listdir(tmp_path)) == ['test.json', 'test.md',
                                          'test_predictions.npz']
  # A cross-fold table read back from its JSON renders the same table.
  json_path, _ = tables.write_results(_cross_fold(), str(tmp_path))
  with open(json_path) as f:
    loaded = json.load(f)
  assert tables.markdown_table(loaded, AUS) == tables.markdown_table(
      _cross_fold(), AUS)


def test_failed_write_leaves_old_file(tmp_path):
  path = str(tmp_path / 'results.json')
  tables.write_atomic(path, lambda f: f.write('old'))

  def crash(f):
    f.write('half a new fi')
    raise RuntimeError('killed')

  with pytest.raises(RuntimeError):
    tables.write_atomic(path, crash)
  assert open(path).read() == 'old'
  assert os.listdir(tmp_path) == ['results.json']


def _is_png(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_plots(tmp_path):
  path = visualize.plot_per_au_f1(_cross_fold(), AUS,
                                  str(tmp_path / 'f1.png'))
  assert _is_png(path)
  single = evaluate.compute_metrics(LABELS, PROBABILITIES, AUS)
  assert _is_png(visualize.plot_per_au_f1(single, AUS,
                                          str(tmp_path / 'one.png')))
  lines = [{'step': 1, 'train_loss': 0.9, 'learning_rate': 1e-3},
           {'step': 2, 'train_loss': 0.7, 'learning_rate': 1e-3,
            'val_mean_f1': 30.0}]
  jsonl = tmp_path / 'metrics.jsonl'
  jsonl.write_text('\n'.join(json.dumps(x) for x in lines) + '\n{"step": 3,')
  records = visualize.read_metrics_jsonl(str(jsonl))
  assert [r['step'] for r in records] == [1, 2]  # truncated line skipped
  assert _is_png(visualize.plot_training_curves(str(jsonl),
                                                str(tmp_path / 'curves.png')))
  jsonl.write_text('not json\n')
  with pytest.raises(ValueError, match='metrics.jsonl'):
    visualize.plot_training_curves(str(jsonl), str(tmp_path / 'x.png'))


def test_evaluate_on_batches_padded_by_parallel():
  rows = {'au_occurrence': LABELS[:3],
          'subject': np.array([b'F001', b'F001', b'M002'], object)}
  batch = parallel.pad_batch(rows, 5)
  probabilities = np.concatenate([PROBABILITIES[:3], np.ones((2, 2))])
  results = evaluate.evaluate(lambda b: probabilities, [batch], AUS)
  expected = evaluate.compute_metrics(LABELS[:3], PROBABILITIES[:3], AUS)
  assert results['per_au'] == expected['per_au']
  assert results['subject'].tolist() == ['F001', 'F001', 'M002']
