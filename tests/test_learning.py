"""A tiny run learns: held-out F1 beats the all-positive floor.

The other end-to-end tests check that numbers exist and are well formed; this
one checks that the trainer, the input pipeline and the evaluation together
produce a detector better than calling every frame positive, on subjects it
never saw. DRML (its `test` variant: 66 px crops) trains 80 Adam steps on
synthetic_au/small for the two AUs the renderer draws most visibly (AU6
cheek raiser and AU12 lip corner puller: the smile), with thresholds tuned
on the two validation subjects. Training on CPU is deterministic, so the
margins below are not a matter of luck: they were measured at 51.6 vs 37.2
mean F1 and AUC 97.5 / 88.5 (`aus`=(6, 12), fold 1; 48.1 and 80.6 / 74.1
before DRML's CPU convolutions became channel blocks, models/conv.py,
which add in another order).
"""

import os

import jax
import pytest

from au_jax import prepare
from au_jax import train
from configs import drml
from configs import emonet


@pytest.fixture(scope='module')
def small_data_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds_small'))
  prepare.prepare('synthetic_au', 'small', data_dir)
  return data_dir


@pytest.fixture
def optimised_compiles():
  """80 steps: run time, not compile time, dominates, so optimise."""
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


def test_tiny_run_beats_the_all_positive_floor(small_data_dir, tmp_path,
                                               optimised_compiles):
  del optimised_compiles
  config = drml.get_config('test')
  config.data_dir = small_data_dir
  config.dataset_config = 'small'
  config.folds = '1'
  config.aus = (6, 12)
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.weight_decay = 0.0
  config.batch_size = 16
  config.eval_batch_size = 64
  config.num_train_steps = 80
  config.eval_every_steps = 80
  config.checkpoint_every_steps = 80
  config.log_every_steps = 80
  config.num_validation_subjects = 2
  config.max_validation_frames = 128
  config.tune_thresholds = True
  config.min_positives_for_threshold = 1
  results = train.train_fold(config, str(tmp_path), fold=1)

  assert results['num_frames'] == 4 * 64  # Part 1: 4 held-out subjects.
  mean = results['mean']
  # Mean F1 at the tuned thresholds clears the floor by a wide margin...
  assert mean['f1'] > mean['baseline_f1'] + 5.0, mean
  # ...and each AU ranks its frames far better than chance.
  for au in ('6', '12'):
    assert results['per_au'][au]['auc'] > 65.0, results['per_au'][au]


@pytest.fixture(scope='module')
def default_data_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds_default'))
  prepare.prepare('synthetic_au', 'default', data_dir)
  return data_dir


@pytest.mark.skipif(
    not os.environ.get('AU_JAX_SLOW_TESTS'),
    reason='EmoNet CPU job, ~6-9 CPU-minutes: set AU_JAX_SLOW_TESTS=1')
def test_classify_learns_emotion_on_held_out_subjects(default_data_dir,
                                                      tmp_path,
                                                      optimised_compiles):
  """`classify` on the emotion field: the EmoNet CPU job of configs/emonet.py
  (measured 65.6% vs 54.8% for the majority class) beats always answering
  the most frequent emotion of the test people by a clear margin."""
  del optimised_compiles
  config = emonet.get_config()
  config.data_dir = default_data_dir
  config.num_workers = 0
  config.progress_bar = False
  results = train.train_fold(config, str(tmp_path), fold=1)
  counts = [cell['count'] for cell in results['per_class'].values()]
  majority = 100.0 * max(counts) / sum(counts)
  assert sum(counts) == results['num_frames'] == 8 * 5 * 64
  assert results['accuracy'] > majority + 5.0, (results['accuracy'], majority)
