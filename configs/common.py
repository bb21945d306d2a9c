"""Settings every config shares, set in one place.

`base()`: the fields of every run (data, input, solver, the method
contract, speed, cadences, evaluation) at neutral values (those the trainer
assumes where a field is absent); a paper's config sets what its paper
decides on top of it and adds its own fields.

`omit`: the base fields a config's runs were fingerprinted without.

`cpu_run` and `tiny_run`: the cadences of the CPU jobs and of every
config's `test` variant, so a variant says only what is its own.
"""

from collections.abc import Sequence

import ml_collections

from au_jax import aus

# Speed fields (DESIGN.md): the host decodes and resizes (uint8); crop,
# mirror and normalisation run in the jitted step unless host_augmentation.
SPEED_FIELDS = ('dtype', 'cache', 'host_augmentation', 'prefetch_batches')


def base() -> ml_collections.ConfigDict:
  """The fields every run has; `method` and `model_name` are the paper's."""
  config = ml_collections.ConfigDict()
  config.method = ''  # au_jax/methods/<method>.py
  config.model_name = ''  # au_jax/models/<model_name>.py
  config.model = ml_collections.ConfigDict()

  # Data: fold k tests on part k (protocols.md); validation subjects are
  # taken from the training parts.
  config.dataset = 'synthetic_au'
  config.dataset_config = 'default'
  config.data_dir = ml_collections.FieldReference(None, field_type=str)
  config.manual_dir = ml_collections.FieldReference(None, field_type=str)
  config.aus = aus.BP4D_AUS  # Output order of the model.
  config.folds = '1,2,3'
  config.num_validation_subjects = 2
  config.strict_folds = True
  config.max_validation_frames = 600  # Evenly spaced subset while training.

  # Input: resize, random crop (+ mirror) at training, centre crop at test;
  # (pixels - mean) / std, per channel (ImageNet's by default).
  config.resize_size = 240
  config.crop_size = 224
  config.flip = True
  config.pixel_mean = (0.485, 0.456, 0.406)
  config.pixel_std = (0.229, 0.224, 0.225)

  # Solver.
  config.optimizer = 'adam'
  config.learning_rate = 1e-4
  config.momentum = 0.9
  config.weight_decay = 0.0
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.lr_schedule = 'constant'  # 'step': x lr_decay_factor every
  config.lr_decay_steps = 0         # lr_decay_steps; 'linear': to 0.
  config.lr_decay_factor = 0.1
  config.loss_normalise = 'batch'  # Loss summed over AUs / batch size.

  # The method contract (DESIGN.md): one model, one stage, from scratch,
  # nothing frozen, unless the paper says otherwise.
  config.frozen = ''  # Regex of parameters that get no gradient.
  config.lr_mults = ()  # ((regex, multiplier), ...).
  config.init_from = None  # Source run + parameter regex (runs.py).
  config.one_model_per = ()  # ('au',), ('view', 'au'): one run each.
  config.stage_order = ()
  config.stages = ml_collections.ConfigDict()
  config.views = ()  # () = every view of the dataset.
  config.classify_field = ''  # `classify` runs: the label to predict.
  config.num_classes = 0

  # Speed: `cache` holds the decoded training split in memory ('host' RAM
  # or 'device' memory) when it fits; `dtype` 'bfloat16' computes in
  # bfloat16 with float32 parameters, batch-norm statistics, loss and
  # optimiser state.
  config.dtype = 'float32'
  config.cache = None
  config.host_augmentation = False
  config.prefetch_batches = 2

  config.batch_size = 32  # Global: split over all local devices.
  config.eval_batch_size = 64
  config.num_train_steps = 20000
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  config.num_workers = 2
  config.seed = 0

  # Evaluation: F1 at `threshold`, or at per-AU thresholds tuned on
  # validation; an AU with fewer positive validation frames than
  # min_positives_for_threshold keeps 0.5 (fold_evaluation.py).
  config.threshold = 0.5
  config.tune_thresholds = False
  config.min_positives_for_threshold = 10
  # Best checkpoint by validation mean F1 under the test decision rule
  # ('f1'), or by mean AUC ('auc').
  config.best_metric = 'f1'
  # Median smoothing of each video's binary predictions: None (off), an odd
  # window, or 'tune' (on validation).
  config.median_window = None
  config.progress_bar = True
  return config


def omit(config: ml_collections.ConfigDict, fields: Sequence[str]) -> None:
  """Removes base fields this config's runs were fingerprinted without.

  checkpointing.fingerprint hashes every field, so adding one moves every
  run's fingerprint (a finished run is retrained, an ablation no longer
  shares it). The trainer reads a missing field as its base value. Taking
  a name off a config's list is a deliberate change: re-record that
  config in tests/data/config_dumps.json.
  """
  with config.unlocked():
    for field in fields:
      del config[field]


def cpu_run(config: ml_collections.ConfigDict, steps: int, log_every: int,
            tune_thresholds: bool = True) -> None:
  """A CPU job: fold 1, `steps` training steps logged every `log_every`,
  validation twice (on at most 300 frames), checkpoints every 100 steps,
  per-AU thresholds tuned on validation (a short budget leaves the rare
  AUs' probabilities below 0.5)."""
  config.folds = '1'
  config.num_train_steps = steps
  config.log_every_steps = log_every
  config.eval_every_steps = steps // 2
  config.checkpoint_every_steps = 100
  config.max_validation_frames = 300
  config.tune_thresholds = tune_thresholds


def tiny_run(config: ml_collections.ConfigDict, steps: int = 2,
             log_every: int = 1) -> None:
  """Batches of 8, `steps` training steps logged every `log_every`,
  validation and checkpoints every 2 steps on at most 16 validation frames,
  no grain workers, no progress bar (the test suite)."""
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = steps
  config.log_every_steps = log_every
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.max_validation_frames = 16
  config.num_workers = 0
  config.progress_bar = False
