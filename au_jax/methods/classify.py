"""Pretraining as classification of a record field (identity, emotion, view).

Papers: ../shared/papers/lpnet_cvpr2019.txt (4.1.3, face-identity
pretraining), caud_thesis.txt (section 4, EmoNet), aunets_2017.txt (3.2.1
EmoNet; 3.3 the view classifier). Deviation: one softmax head per run, no
paper-specific classifier layers (the model's 'output' Dense).

The papers pretrain their trunks before AU training: LP-Net's ResNet-34 on
face identities (VGGFace2), EmoNet (CAUD, AUNets) on 8 emotions over several
views, AUNets' view classifier on FERA 2017's 9 views. Each is this method:
softmax cross-entropy on `batch[config.classify_field]`, accuracy and a
per-class table, best checkpoint by validation accuracy. Its checkpoints are
ordinary runs, so an AU run starts from them with `config.init_from`.

Labels: 'identity' and 'emotion' are class indices already (-1 = unknown,
masked out); 'view' is 1-based in the records (0 = single view), so class =
view - 1. The model's output width (`num_aus` of the Model) is
`config.num_classes`.
"""

from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from au_jax import parallel
from au_jax import tables
from au_jax.data import transforms

BEST_METRIC = 'val_accuracy'
FIELDS = ('identity', 'emotion', 'view')


def class_labels(batch: Mapping[str, Any], field: str):
  """[B] int class index of each row, -1 where unknown."""
  if field not in FIELDS:
    raise ValueError(f'config.classify_field={field!r}; expected one of '
                     f'{FIELDS}.')
  labels = batch[field]
  if field == 'view':
    labels = labels - 1
  return labels


def loss_fn(outputs, batch, config) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Softmax cross-entropy over rows with a known label, averaged over the
  known rows of the global batch (psum over devices, so D devices = 1).

  outputs: (logits [B, K], aux); batch[classify_field]: [B] int.
  """
  logits, _ = outputs
  logits = logits.astype(jnp.float32)
  labels = class_labels(batch, config.classify_field)
  known = (labels >= 0) & (labels < logits.shape[-1])
  safe = jnp.where(known, labels, 0)
  log_probs = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]
  total = jax.lax.psum(jnp.sum(jnp.where(known, nll, 0.0)),
                       parallel.AXIS_NAME)
  count = jax.lax.psum(jnp.sum(known), parallel.AXIS_NAME)
  correct = jax.lax.psum(
      jnp.sum(known & (jnp.argmax(logits, -1) == labels)), parallel.AXIS_NAME)
  device_count = jax.lax.psum(1, parallel.AXIS_NAME)
  # The trainer averages gradients over devices (pmean): scale by D so the
  # mean of the per-device losses is the global-batch mean.
  loss = total / jnp.maximum(count, 1) * device_count
  return loss, {'classify_loss': total / jnp.maximum(count, 1),
                'train_accuracy': correct / jnp.maximum(count, 1)}


def predict(logits: jax.Array, aux) -> jax.Array:
  """Class probabilities [B, K]."""
  del aux
  return jax.nn.softmax(logits.astype(jnp.float32))


def accuracy_table(labels: np.ndarray, predictions: np.ndarray,
                   groups: np.ndarray | None = None) -> dict[str, Any]:
  """{'accuracy', 'num_frames', 'per_class': {c: {accuracy, count}},
  'per_group': {g: {accuracy, count}}} in percent, unknown labels skipped."""
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  known = labels >= 0
  correct = (labels == predictions) & known
  def cell(rows):
    count = int(rows.sum())
    return {'accuracy': (100.0 * correct[rows].sum() / count if count
                         else float('nan')), 'count': count}
  table = {'accuracy': cell(known)['accuracy'],
           'num_frames': int(known.sum()),
           'per_class': {str(int(c)): cell(known & (labels == c))
                         for c in np.unique(labels[known])}}
  if groups is not None:
    groups = np.asarray(groups)
    table['per_group'] = {str(g): cell(known & (groups == g))
                          for g in np.unique(groups)}
  return table


def evaluate_split(predict_fn: Callable[[Mapping[str, np.ndarray]], np.ndarray],
                   batches: Iterable[Mapping[str, np.ndarray]],
                   config, **unused) -> dict[str, Any]:
  """Accuracy over every real frame (padding masked), per class and per
  view; 'mean' holds {'accuracy'} so tables and best-checkpoint selection
  read it like AU results."""
  labels, predictions, views, subjects = [], [], [], []
  for batch in batches:
    mask = np.asarray(batch['mask'], bool)
    probabilities = np.asarray(predict_fn(batch))
    labels.append(np.asarray(class_labels(batch, config.classify_field))[mask])
    predictions.append(probabilities.argmax(-1)[mask])
    views.append(np.asarray(batch['view'])[mask])
    if 'subject_code' in batch:
      subjects.append(transforms.decode_text_ids(
          np.asarray(batch['subject_code'])[mask]))
  labels = np.concatenate(labels)
  predictions = np.concatenate(predictions)
  views = np.concatenate(views)
  table = accuracy_table(labels, predictions, views)
  table['per_view'] = table.pop('per_group')
  table['field'] = config.classify_field
  table['mean'] = {'accuracy': table['accuracy']}
  table['labels'] = labels
  table['predictions'] = predictions
  table['view'] = views
  if subjects:
    table['subject'] = np.concatenate(subjects)
  return table


def markdown(results: Mapping[str, Any]) -> str:
  """Per-class and per-view accuracy tables (Markdown)."""
  lines = [f"{results['field']} accuracy: {results['accuracy']:.1f}% over "
           f"{results['num_frames']} frames", '',
           '| class | accuracy | frames |', '|---|---:|---:|']
  for name, cell in results['per_class'].items():
    lines.append(f"| {name} | {cell['accuracy']:.1f} | {cell['count']} |")
  lines += ['', '| view | accuracy | frames |', '|---|---:|---:|']
  for name, cell in results['per_view'].items():
    lines.append(f"| {name} | {cell['accuracy']:.1f} | {cell['count']} |")
  return '\n'.join(lines)


def validation_scalars(results: Mapping[str, Any]) -> dict[str, float]:
  """Validation accuracy, which also picks the best checkpoint."""
  return {'val_accuracy': results['accuracy'],
          'val_best': results['accuracy']}


def test_results(evaluator: Any, p_state: Any, directory: str,
                 extra: Mapping[str, Any]) -> dict[str, Any]:
  """The test split's accuracy tables, with `extra`, written to
  `directory/test_results.{json,md}`."""
  results = evaluator.split_results(p_state, 'test')
  results.update(extra)
  tables.write_results(results, directory, 'test_results',
                       markdown=markdown(results))
  return results
