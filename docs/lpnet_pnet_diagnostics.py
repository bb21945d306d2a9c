r"""What LP-Net's P-Net does in a trained run, and what its input could do.

Re-measures docs/lpnet.md, "What the P-Net diagnostics show". Two parts:

1. P-Net in a run (`--run`): the run's kept checkpoint (best by validation,
   as its test used) applied to up to --frames evenly spaced test frames of
   the run's fold, exactly as evaluation feeds them (`model_batches`).
   Reported over the frames with a usable shape (aux['shape_valid']):
     terms_std[au]        std over frames of P-Net's term m_j (eq. 4);
     head_logits_std[au]  the same for the logits P-Net is added to: L-Net's
                          (eq. 1), or the Stem-Net 'output' layer's in a
                          model without L-Net (`head` says which);
     shape_feature_norm   mean L2 norm |f_s| of P-Net's shape feature;
     au_feature_norm      mean |f_au| (the mean of the stem's k local
                          features);
     abs_cos              mean |cos(f_au, f_s)| (0 where either is 0);
     orthogonality_loss   L_r = mean |f_au . f_s| (eq. 3, as the loss);
     input_mean_abs       mean |x| over frames and the 136 coordinates of
                          P-Net's input x (eq. 2-normalised landmarks);
     input_std            std over frames of each coordinate of x, averaged
                          over the 136 coordinates.
   `*_mean` is the mean over AUs. The values come from the model's own
   outputs: aux['shape_terms'], aux['shape_feature'], aux['au_feature'], and
   the head's logits captured with flax's `capture_intermediates` (the model
   is unchanged); x is `lpnet.normalise_landmarks` of the batch's landmarks,
   the very function P-Net calls.
2. A landmark probe (`probe`), no trained network: per AU, a class-balanced
   logistic regression (scikit-learn) on P-Net's input x, z-scored with the
   training frames' mean and std, fitted on every 2nd frame of the fold's
   training subjects and tested on every frame of its test subjects.
   F1 (percent, threshold 0.5 on predict_proba) per AU and its mean, and the
   all-present F1 (every AU predicted present) on the same test frames. The
   landmarks are read from the records without decoding images; eq. 2 is
   unchanged by the evaluation's resize (uniform on square faces) and
   centre crop (a shift), so x is the input P-Net gets on those frames.

  RUN=/tmp/lpnet_ablation/pnet/seed_0/synthetic_au-default/lpnet/fold_1
  PYTHONPATH=. python docs/lpnet_pnet_diagnostics.py \
      --run=$RUN/stage_pnet [--frames=512] [--out=pnet_seed0.json] \
      [--data_dir=/tmp/tfds_ablate]
  PYTHONPATH=. python docs/lpnet_pnet_diagnostics.py \
      --config=configs/lpnet.py:ablation --config.data_dir=/tmp/tfds_ablate

--run takes a stage_pnet run directory, or its fold directory (the last
stage of the config's stage_order is used). With --config and no --run only
the probe runs, on the fold --fold (default: the config's first fold).
"""

import functools
import json
import os
from typing import Any, Sequence

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import tensorflow_datasets as tfds

from au_jax import metrics
from au_jax import runs
from au_jax import tables
from au_jax.data import folds
from au_jax.data import input_pipeline
from au_jax.methods import lpnet as lpnet_method
from au_jax.models import lpnet
from au_jax.predict import run as run_lib

TRAIN_EVERY = 2  # The probe trains on every 2nd training frame.


# ------------------------------------------------------------------ values


def pnet_input(landmarks: Any) -> tuple[np.ndarray, np.ndarray]:
  """P-Net's input: [N, 68, 2] pixels -> (x [N, 136] float32, valid [N]
  bool), eq. 2 as `lpnet.PNet` computes it (0 where absent/unusable)."""
  normalised, valid = lpnet.normalise_landmarks(jnp.asarray(landmarks))
  x = np.asarray(normalised).reshape(normalised.shape[0], -1)
  return x, np.asarray(valid) > 0


def feature_statistics(au_feature: np.ndarray,
                       shape_feature: np.ndarray) -> dict[str, float]:
  """f_au and f_s [N, D] -> mean |f_s|, mean |f_au|, mean |cos(f_au, f_s)|
  (0 for a row where either vector is 0) and L_r (eq. 3, mean over rows)."""
  au_feature = np.asarray(au_feature, np.float64)
  shape_feature = np.asarray(shape_feature, np.float64)
  au_norm = np.linalg.norm(au_feature, axis=-1)
  shape_norm = np.linalg.norm(shape_feature, axis=-1)
  dot = np.sum(au_feature * shape_feature, axis=-1)
  norms = au_norm * shape_norm
  cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
  orthogonality = np.asarray(lpnet_method.orthogonality_loss(
      jnp.asarray(au_feature, jnp.float32),
      jnp.asarray(shape_feature, jnp.float32)))
  return {'shape_feature_norm': float(shape_norm.mean()),
          'au_feature_norm': float(au_norm.mean()),
          'abs_cos': float(np.abs(cos).mean()),
          'orthogonality_loss': float(orthogonality.mean())}


def per_au_std(values: np.ndarray, aus: Sequence[int]) -> dict[str, float]:
  """[N, C] -> {AU id: std over the N frames}."""
  std = np.asarray(values, np.float64).std(axis=0)
  return {str(int(au)): float(s) for au, s in zip(aus, std)}


def pnet_statistics(outputs: dict[str, np.ndarray],
                    aus: Sequence[int]) -> dict[str, Any]:
  """The part-1 values (module docstring) from stacked per-frame outputs.

  Args:
    outputs: 'terms' m [N, C], 'head_logits' [N, C], 'shape_feature' f_s
      [N, D], 'au_feature' f_au [N, D], 'pnet_input' x [N, 136] and
      'valid' [N] bool (usable shape), one row per real test frame.
    aus: the C AU ids.

  Returns:
    {'frames', 'frames_with_shape', 'terms_std', 'terms_std_mean',
    'head_logits_std', 'head_logits_std_mean', 'shape_feature_norm',
    'au_feature_norm', 'abs_cos', 'orthogonality_loss', 'input_mean_abs',
    'input_std'}; every value but the counts over frames with a usable shape.
  """
  valid = np.asarray(outputs['valid'], bool)
  if not valid.any():
    raise ValueError('No test frame has usable landmarks (both eye centres): '
                     'P-Net adds nothing on them.')
  rows = {k: np.asarray(v)[valid] for k, v in outputs.items() if k != 'valid'}
  terms_std = per_au_std(rows['terms'], aus)
  head_std = per_au_std(rows['head_logits'], aus)
  x = np.asarray(rows['pnet_input'], np.float64)
  result = {'frames': int(valid.size), 'frames_with_shape': int(valid.sum()),
            'terms_std': terms_std,
            'terms_std_mean': float(np.mean(list(terms_std.values()))),
            'head_logits_std': head_std,
            'head_logits_std_mean': float(np.mean(list(head_std.values())))}
  result.update(feature_statistics(rows['au_feature'], rows['shape_feature']))
  result.update(input_mean_abs=float(np.abs(x).mean()),
                input_std=float(x.std(axis=0).mean()))
  return result


# ------------------------------------------------------------ part 1: P-Net


def _capture_head(module: nn.Module, method_name: str) -> bool:
  """capture_intermediates filter: the call of the top-level L-Net ('lnet')
  or, without L-Net, of the Stem-Net's Dense 'output'."""
  return (method_name == '__call__' and module.scope is not None
          and tuple(module.scope.path) in (('lnet',), ('output',)))


def forward(model: nn.Module, variables: dict[str, Any],
            batch: dict[str, Any]) -> dict[str, jax.Array]:
  """One evaluation batch -> the per-frame values `pnet_statistics` reads
  (plus 'logits'), the model's parameters and outputs untouched."""
  (logits, aux), state = model.apply(
      variables, batch, train=False, capture_intermediates=_capture_head,
      mutable=['intermediates'])
  captured = state['intermediates']
  if 'lnet' in captured:
    head = captured['lnet']['__call__'][0][0]  # (logits, per-position)
  else:
    head = captured['output']['__call__'][0]
  normalised, valid = lpnet.normalise_landmarks(batch['landmarks'])
  return {'logits': logits, 'head_logits': head.astype(jnp.float32),
          'terms': aux['shape_terms'], 'shape_feature': aux['shape_feature'],
          'au_feature': aux['au_feature'],
          'pnet_input': normalised.reshape(normalised.shape[0], -1),
          'valid': (valid > 0) & batch['mask']}


def pnet_diagnostics(run: run_lib.Run, data: input_pipeline.FoldData,
                     frames: int) -> dict[str, Any]:
  """Part 1 on up to `frames` evenly spaced test frames of `data`.

  Args:
    run: a loaded run (`predict.run.load_run`) whose model has P-Net.
    data: its fold (`input_pipeline.fold_data`).
    frames: the most test frames to read.

  Returns:
    `pnet_statistics` with 'head' ('lnet' or 'stem'), 'step' (the restored
    checkpoint) and 'orthogonality_weight' (the run's lambda) added.
  """
  if not run.config.model.get('use_pnet'):
    raise ValueError(f'{run.directory}: the model has no P-Net '
                     '(config.model.use_pnet is False).')
  apply = jax.jit(functools.partial(forward, run.model))
  parts = []
  for batch in input_pipeline.model_batches(run.config, data, 'test',
                                            max_frames=frames):
    out = jax.device_get(apply(run.variables, batch))
    keep = np.asarray(batch['mask'], bool)
    parts.append({k: np.asarray(v)[keep] for k, v in out.items()})
  outputs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  # Every frame (not only those with a shape) counts in 'frames'.
  result = pnet_statistics(
      {k: v for k, v in outputs.items() if k != 'logits'}, run.aus)
  result['head'] = 'lnet' if run.config.model.get('use_lnet') else 'stem'
  result['step'] = run.step
  result['orthogonality_weight'] = float(run.config.orthogonality_weight)
  return result


# ------------------------------------------------------ part 2: the probe


def landmark_features(data: input_pipeline.FoldData, split: str,
                      every: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """P-Net's input x and the labels of every `every`-th frame of `split`.

  Read from the records without decoding images, in record order (the
  order evaluation reads), restricted to `data.views`.

  Returns:
    x [N, 136] float32 (eq. 2 of the stored landmarks, equal to eq. 2 of the
    evaluation crop's landmarks) and labels [N, C] int (1, 0, -1 unknown)
    in the config's AU order.
  """
  height, width = data.builder.info.features['image'].shape[:2]
  if height is None or height != width:
    raise ValueError(
        f'{data.builder.info.full_name} stores {height}x{width} faces; the '
        'probe reads landmarks without the resize, which only a square face '
        'leaves out of eq. 2.')
  source = data.builder.as_data_source(
      split=folds.split_spec(getattr(data.subjects, split)),
      decoders={'image': tfds.decode.SkipDecoding()})
  landmarks, labels = [], []
  for index in range(0, len(source), every):
    record = source[index]
    if data.views and int(record['view']) not in data.views:
      continue
    landmarks.append(np.asarray(record['landmarks'], np.float32))
    labels.append(np.asarray(record['au_occurrence'])[data.label_indices])
  if not landmarks:
    raise ValueError(f'No {split} frames to read.')
  x, _ = pnet_input(np.stack(landmarks))
  return x, np.stack(labels).astype(np.int32)


def probe_f1(train_x: np.ndarray, train_labels: np.ndarray,
             test_x: np.ndarray, test_labels: np.ndarray,
             aus: Sequence[int]) -> dict[str, Any]:
  """Per-AU class-balanced logistic regressions on z-scored x.

  Args:
    train_x, test_x: [N, F] features; z-scored here with train_x's mean and
      std (a constant column is only centred).
    train_labels, test_labels: [N, C] in {1, 0, -1 unknown}; unknown labels
      are left out of fitting and of F1.
    aus: the C AU ids.

  Returns:
    {'f1': {AU: percent}, 'mean_f1', 'all_present_f1': {AU: percent},
    'mean_all_present_f1', 'train_frames', 'test_frames'}. An AU with one
    class among its known training labels predicts that class.
  """
  from sklearn import linear_model  # pylint: disable=g-import-not-at-top
  mean = train_x.mean(axis=0)
  std = train_x.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  train_z = (train_x - mean) / std
  test_z = (test_x - mean) / std
  predictions = np.zeros(test_labels.shape, np.int32)
  for c in range(test_labels.shape[1]):
    known = train_labels[:, c] >= 0
    classes = np.unique(train_labels[known, c])
    if classes.size < 2:
      predictions[:, c] = classes[0] if classes.size else 0
      continue
    model = linear_model.LogisticRegression(class_weight='balanced',
                                            max_iter=2000)
    model.fit(train_z[known], train_labels[known, c])
    predictions[:, c] = model.predict_proba(test_z)[:, 1] >= 0.5
  f1 = 100.0 * metrics.f1_frame(test_labels, predictions)
  floor = 100.0 * metrics.f1_frame(test_labels, np.ones_like(test_labels))
  return {'f1': {str(int(a)): float(v) for a, v in zip(aus, f1)},
          'mean_f1': float(f1.mean()),
          'all_present_f1': {str(int(a)): float(v)
                             for a, v in zip(aus, floor)},
          'mean_all_present_f1': float(floor.mean()),
          'train_frames': int(train_x.shape[0]),
          'test_frames': int(test_x.shape[0])}


def landmark_probe(config: ml_collections.ConfigDict,
                   data: input_pipeline.FoldData,
                   train_every: int = TRAIN_EVERY) -> dict[str, Any]:
  """Part 2: `probe_f1` trained on every `train_every`-th frame of the
  fold's training subjects, tested on all frames of its test subjects."""
  train_x, train_labels = landmark_features(data, 'train', train_every)
  test_x, test_labels = landmark_features(data, 'test')
  result = probe_f1(train_x, train_labels, test_x, test_labels, config.aus)
  result['train_every'] = int(train_every)
  return result


# -------------------------------------------------------------------- main


def pnet_run_dir(path: str) -> str:
  """`path` if it is a run (config.json), else the stage directory of its
  config's last stage (a fold directory of a staged run)."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isfile(os.path.join(path, 'config.json')):
    return path
  stages = sorted(n for n in os.listdir(path) if n.startswith('stage_')
                  and os.path.isfile(os.path.join(path, n, 'config.json')))
  if not stages:
    raise ValueError(f'{path} is neither a run directory (config.json) nor '
                     'a fold directory with stage_* runs.')
  order = run_lib.load_config(os.path.join(path, stages[0])).stage_order
  return os.path.join(path, f'stage_{order[-1]}')


def diagnostics(run_dir: str | None, config: ml_collections.ConfigDict | None,
                frames: int, fold: int | None = None,
                data_dir: str | None = None) -> dict[str, Any]:
  """Both parts for a run, or the probe alone for a config.

  Returns:
    {'dataset', 'fold', 'train_subjects', 'test_subjects', 'probe'} and,
    with a run, 'run' (its directory) and 'pnet' (`pnet_diagnostics`).
  """
  run = None
  if run_dir is not None:
    run = run_lib.load_run(pnet_run_dir(run_dir))
    config = run.config
    fold = config.get('run_fold')
  if config is None:
    raise ValueError('Give --run or --config.')
  if data_dir is not None:
    config = ml_collections.ConfigDict(config.to_dict())
    config.data_dir = data_dir
    if run is not None:
      run.config = config
  if fold is None:
    fold = runs.folds_of(config)[0]
  if fold == runs.ALL:
    raise ValueError("The 'all' fold has no test subjects.")
  data = input_pipeline.fold_data(config, input_pipeline.open_dataset(config),
                                  int(fold))
  result = {'dataset': runs.dataset_dir_name(config), 'fold': int(fold),
            'train_subjects': list(data.subjects.train),
            'test_subjects': list(data.subjects.test)}
  if run is not None:
    result['run'] = run.directory
    result['pnet'] = pnet_diagnostics(run, data, frames)
  result['probe'] = landmark_probe(config, data)
  return result


def _define_flags() -> None:
  """The command line; defined only when run as a script, so importing the
  module (the tests) adds no global flags that could clash."""
  flags.DEFINE_string(
      'run', None, 'An LP-Net run directory whose model has P-Net '
      '(.../lpnet/fold_1/stage_pnet), or its fold directory.')
  config_flags.DEFINE_config_file(
      'config', None, 'Without --run: the config whose fold the probe uses '
      '(e.g. configs/lpnet.py:ablation).', lock_config=False)
  flags.DEFINE_integer(
      'frames', 512, 'At most this many evenly spaced test frames for P-Net.')
  flags.DEFINE_integer(
      'fold', None, "Probe-only fold (default: the config's first fold).")
  flags.DEFINE_string(
      'data_dir', None, "Where the dataset is (default: the config's "
      'data_dir).')
  flags.DEFINE_string('out', None, 'Also write the JSON here (atomically).')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  values = flags.FLAGS
  result = diagnostics(values.run, values.config, values.frames, values.fold,
                       values.data_dir)
  text = json.dumps(result, indent=1)
  print(text)
  if values.out:
    tables.write_atomic(values.out, lambda f: f.write(text + '\n'))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
