"""Settings several configs share, set in one place.

`tiny_run`: the cadence of every config's `test` variant (tiny shapes, a
handful of steps, no worker processes), so each config's test branch only
says what is its own (model size, data, AUs).
"""

import ml_collections


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
