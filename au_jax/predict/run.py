"""A trained run, loaded for `au_jax.predict`: `load_run` and the model input.

A run directory describes itself: `config.json` gives the AU list (the
columns), the face preprocessing of the dataset it was trained on (the
builder config's crop/aligned mode, margin and stored face size), the input
size and pixel scaling; `test_results.json` gives the decision threshold per
AU and, when evaluation tuned one, the median window.

One model per AU (`config.one_model_per=('au',)`): `--checkpoint` may name
the fold directory that holds the runs `au_<nn>/`. A model whose module has
`join_heads` (CAUD/HydraNet: per-AU heads on one frozen encoder) is joined
into one model that predicts every AU in one forward pass, each AU with its
own run's threshold and window (`_load_joined`); other per-AU models are
refused with the AU runs to pick from.

`prepare_model_input` is the one place where a face crop becomes model
input (the evaluation transforms).
"""

import dataclasses
import importlib
import json
import os
import tempfile
from typing import Any, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from au_jax import checkpointing
from au_jax import models
from au_jax import prepare
from au_jax.data import transforms
from au_jax.preprocess import face as face_lib


@dataclasses.dataclass
class Run:
  """A trained run, loaded for prediction.

  Attributes:
    directory: the run directory.
    config: its training config.
    aus: [C] FACS ids (model output order).
    model: the linen Module (no pmap axis).
    variables: {'params', 'batch_stats'} of the restored step.
    step: the restored step (best by validation F1, else the latest).
    thresholds: [C] decision thresholds on the probability.
    median_windows: [C] median windows the run tuned (1 = none).
    face_options: how faces are cut out of frames (the dataset's).
    intensity: True when the model returns `aux['au_intensity']`.
    apply_fn: jitted (variables, batch) -> (logits [B, C], intensity
      [B, C]; zeros without intensity).
  """
  directory: str
  config: ml_collections.ConfigDict
  aus: tuple[int, ...]
  model: Any
  variables: dict[str, Any]
  step: int
  thresholds: np.ndarray
  median_windows: np.ndarray
  face_options: face_lib.FaceOptions
  intensity: bool = False
  apply_fn: Any = None


def _tuples(value: Any) -> Any:
  """JSON lists back to tuples (ml_collections keeps tuples as lists)."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def load_config(directory: str) -> ml_collections.ConfigDict:
  """The run's config.json, lists turned back into tuples; ValueError (one
  line) when the directory is not a run."""
  try:
    config = checkpointing.read_config(directory)
  except FileNotFoundError as error:
    raise ValueError(str(error).splitlines()[0]) from None
  except json.JSONDecodeError as error:
    raise ValueError(f'{directory}/config.json is not valid JSON '
                     f'({error}).') from None
  return ml_collections.ConfigDict(_tuples(config.to_dict()))


def face_options_for(config: ml_collections.ConfigDict) -> face_lib.FaceOptions:
  """The face crop the run's training records were made with.

  Real-dataset builder configs carry `face_options()` (crop or aligned,
  margin, stored size); builders without one (synthetic_au renders whole
  faces) get a Haar crop with the default margin at their stored image size.
  """
  builder_class = prepare.builder_class(config.dataset)
  builder_configs = {c.name: c for c in builder_class.BUILDER_CONFIGS or []}
  builder_config = builder_configs.get(config.dataset_config)
  if builder_config is None:
    raise ValueError(f'config.json: dataset {config.dataset!r} has no '
                     f'config {config.dataset_config!r} '
                     f'(known: {sorted(builder_configs)}).')
  if hasattr(builder_config, 'face_options'):
    return builder_config.face_options()
  with tempfile.TemporaryDirectory() as data_dir:
    builder = builder_class(config=config.dataset_config, data_dir=data_dir)
    size = int(builder.info.features['image'].shape[0])
  return face_lib.FaceOptions(image_size=size, mode='crop')


def _decision_rule(directory: str, config, aus) -> tuple[np.ndarray,
                                                         np.ndarray]:
  """Per-AU thresholds and median windows from test_results.json."""
  thresholds = np.full(len(aus), float(config.get('threshold', 0.5)))
  windows = np.ones(len(aus), np.int64)
  path = os.path.join(directory, 'test_results.json')
  if not os.path.isfile(path):
    logging.warning('%s: no test_results.json; threshold %.2f for every AU, '
                    'no smoothing.', directory, thresholds[0])
    return thresholds, windows
  with open(path, encoding='utf-8') as f:
    results = json.load(f)
  per_au = results.get('per_au', {})
  for c, au in enumerate(aus):
    entry = per_au.get(str(au), {})
    if entry.get('threshold') is not None:
      thresholds[c] = float(entry['threshold'])
    window = entry.get('median_window', results.get('median_window'))
    if window:
      windows[c] = int(window)
  return thresholds, windows


def _restore(directory: str) -> tuple[dict[str, Any], int]:
  """(variables, step) of a run directory; ValueError (one line) when it
  has no finished step."""
  weights_only = os.path.isfile(os.path.join(
      directory, checkpointing.WEIGHTS_DIR, checkpointing.FINISHED))
  if not (weights_only
          or os.path.isdir(os.path.join(directory, 'checkpoints'))):
    raise ValueError(f'Run directory {directory} has no checkpoints/ (nor '
                     f'{checkpointing.WEIGHTS_DIR}/): no finished training '
                     'step.')
  try:
    # The best step by validation, else the newest intact one, else a
    # weights-only run's best weights.
    state, step = checkpointing.restore_raw(directory)
  except FileNotFoundError as error:
    raise ValueError(str(error).splitlines()[0]) from None
  variables = {'params': state['params']}
  if state.get('batch_stats'):
    variables['batch_stats'] = state['batch_stats']
  return variables, int(step)


def _au_run_dirs(directory: str) -> list[str]:
  """The `au_<nn>` run directories (with a config.json) of a fold
  directory that is not itself a run; [] otherwise."""
  if os.path.isfile(os.path.join(directory, 'config.json')):
    return []
  names = sorted(n for n in os.listdir(directory) if n.startswith('au_')
                 and os.path.isfile(os.path.join(
                     directory, n, 'config.json')))
  return [os.path.join(directory, n) for n in names]


def _load_joined(directory: str, au_dirs: Sequence[str]):
  """(config, variables, step, thresholds, windows) of one model joined
  from per-AU runs: the model module's `join_heads` merges their parameter
  trees (it checks they share one encoder); AU order and each AU's decision
  rule come from the AU runs."""
  configs = [load_config(d) for d in au_dirs]
  names = sorted({c.model_name for c in configs})
  module = importlib.import_module(f'au_jax.models.{names[0]}')
  if len(names) > 1 or not hasattr(module, 'join_heads'):
    raise ValueError(
        f'{directory} holds one run per AU of model(s) {names}, which '
        'cannot be joined into one model; give one AU run: '
        f'{[os.path.basename(d) for d in au_dirs]}.')
  restored = [_restore(d) for d in au_dirs]
  try:
    params = module.join_heads([v['params'] for v, _ in restored])
  except ValueError as error:
    raise ValueError(f'{directory}: {error}') from None
  aus = tuple(int(a) for c in configs for a in c.aus)
  config = ml_collections.ConfigDict(configs[0].to_dict())
  config.aus = aus
  rules = [_decision_rule(d, c, tuple(int(a) for a in c.aus))
           for d, c in zip(au_dirs, configs)]
  logging.info('%s: joined %d per-AU runs (AUs %s) into one %s model.',
               directory, len(au_dirs), list(aus), names[0])
  return (config, {'params': params}, min(step for _, step in restored),
          np.concatenate([t for t, _ in rules]),
          np.concatenate([w for _, w in rules]))


def load_run(directory: str) -> Run:
  """Restores a run directory (or a fold directory of per-AU runs that
  join into one model, module docstring); ValueError (one line) when it is
  unusable."""
  directory = os.path.abspath(os.path.expanduser(directory))
  if not os.path.isdir(directory):
    raise ValueError(f'Checkpoint directory {directory} does not exist.')
  au_dirs = _au_run_dirs(directory)
  if au_dirs:
    config, variables, step, thresholds, windows = _load_joined(directory,
                                                                au_dirs)
    aus = tuple(config.aus)
  else:
    config = load_config(directory)
    variables, step = _restore(directory)
    aus = tuple(int(a) for a in config.aus)
    thresholds, windows = _decision_rule(directory, config, aus)
  run = Run(directory=directory, config=config, aus=aus,
            model=models.create(config), variables=variables, step=int(step),
            thresholds=thresholds, median_windows=windows,
            face_options=face_options_for(config))
  blank = np.zeros((run.face_options.image_size,) * 2 + (3,), np.uint8)
  _, aux = jax.eval_shape(
      lambda v, b: run.model.apply(v, b, train=False), variables,
      prepare_model_input([blank], config,
                          [blank] if config.get('flow') else None))
  run.intensity = isinstance(aux, dict) and 'au_intensity' in aux

  def apply(variables, batch):
    logits, aux = run.model.apply(variables, batch, train=False)
    intensity = (aux['au_intensity'] if run.intensity
                 else jnp.zeros_like(logits))
    return logits.astype(jnp.float32), intensity.astype(jnp.float32)

  run.apply_fn = jax.jit(apply)
  return run


def prepare_model_input(faces: Sequence[np.ndarray],
                        config: ml_collections.ConfigDict,
                        flows: Sequence[np.ndarray] | None = None
                        ) -> dict[str, np.ndarray]:
  """Face images -> the model's batch, exactly as evaluation prepares them.

  The one place where a face crop becomes model input: the evaluation
  pipeline's `CenterCrop(resize_size, crop_size)` then `Normalize(pixel_mean,
  pixel_std)` on each record. Haar gives no landmarks, so they are absent
  (-1), as for a record without landmarks.

  Args:
    faces: N x [S, S, 3] uint8 RGB faces (S = the dataset's stored size).
    config: the run's config.
    flows: for runs with config.flow (AUNets), N AUNets flow images of the
      faces (uint8, any square size): resized, centre-cropped and
      normalised as evaluation does batch['flow'] (device_transforms).

  Returns:
    'image' [N, crop, crop, 3] float32 and 'landmarks' [N, 68, 2] float32
    (and 'flow' [N, crop, crop, 3] float32 with `flows`).
  """
  geometry = transforms.CenterCrop(config.resize_size, config.crop_size)
  normalize = transforms.Normalize(mean=tuple(config.pixel_mean),
                                   std=tuple(config.pixel_std))
  images, landmarks = [], []
  for image in faces:
    record = {'image': image, 'landmarks': np.full((68, 2), -1, np.float32)}
    record = normalize.map(geometry.map(record))
    images.append(record['image'])
    landmarks.append(record['landmarks'])
  batch = {'image': np.stack(images), 'landmarks': np.stack(landmarks)}
  if flows is not None:
    if len(flows) != len(faces):
      raise ValueError(f'prepare_model_input: {len(flows)} flow images for '
                       f'{len(faces)} faces.')
    no_landmarks = np.full((68, 2), -1, np.float32)
    batch['flow'] = np.stack([
        normalize.map(geometry.map({'image': flow,
                                    'landmarks': no_landmarks}))['image']
        for flow in flows])
  return batch
