"""CAUD / HydraNet: a frozen EmoNet encoder with one FC head stack per AU.

Papers: ../shared/papers/caud_thesis.txt sec. 4.2 (freeze the convolutional
encoder of the multi-view emotion network, replace the output by a binary
one, specialise the fully connected layers; each AU trained in isolation,
then all joined into one network, CAUD, that predicts every AU in one
forward pass) and sec. 5.3.1, table 4 (FC width 4096 best of 4096, 2048,
1024); ../shared/papers/aunets_2017.txt sec. 3.2.1 (HydraNet: the same
design, "growing" a head for a new AU) and table 3 (learnable 119m per AU).

Parameter tree: 'encoder' (VGG conv1_1 ... conv5_3, shared and frozen with
config.frozen='^encoder/.*') and 'head_<i>' for the i-th AU of config.aus,
each {'fc6', 'fc7', 'output'}. At full size one head holds 119,554,050
parameters (fc6 102,764,544 + fc7 16,781,312 + 2-way output 8,194); the
encoder 14,714,688.

Heads are separate submodules evaluated one after another on the same
encoder output, so head i's output depends only on the encoder and head i:
adding head C leaves heads 0..C-1 bit-identical (tests/test_caud.py). With
the encoder frozen, the heads' gradients are independent, so training all
heads at once with a per-AU loss (au_jax/methods/caud.py) gives each head the
update it would get alone; the thesis' "each AU in isolation" is also
available as one run per AU (config.one_model_per=('au',), num_aus=1) whose
single 'head_0' trees `join_heads` merges into the joined model.

Named deviations: the binary output is a 2-way softmax per head as in the
AUNets code (reference/architectures.md); the thesis says only "binary".
`width_multiplier` narrows the network for CPU/test variants (see vgg.py).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from au_jax.models import layers
from au_jax.models import vgg

Array = jax.Array
PyTree = Any

ENCODER = 'encoder'
HEAD_LAYERS = ('fc6', 'fc7', 'output')


def head_name(index: int) -> str:
  return f'head_{index}'


class Head(nn.Module):
  """One AU's FC stack: fc6 -> fc7 -> 2-way (or 1-logit) output."""
  width_multiplier: float = 1.0
  fc_width: int = vgg.FC_WIDTH
  dropout_rate: float = 0.5
  two_way_output: bool = True
  dtype: Any = jnp.float32
  fc_init: str = 'torchvision'

  @nn.compact
  def __call__(self, x: Array, train: bool) -> tuple[Array, Array]:
    """x: [B, F] flattened pool5 -> (logit [B, 1], output Dense [B, 1|2])."""
    x = vgg.fully_connected(self, x, train)
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    z = vgg.output_layer(1, self.two_way_output, self.dtype,
                         fc_init=self.fc_init)(x)
    logit, _ = vgg.split_output(z, 1, self.two_way_output)
    return logit, z.astype(jnp.float32)


class Model(nn.Module):
  """HydraNet/CAUD: shared VGG encoder + `num_aus` independent heads.

  Attributes:
    num_aus: number of heads (AUs); output i is config.aus[i].
    depth, width_multiplier, fc_width, dropout_rate, two_way_output,
      fc_init: as vgg.Model.
    axis_name: accepted for the model contract; VGG has no batch-norm.
    dtype: compute dtype; parameters and returned arrays stay float32.
  """
  num_aus: int
  depth: int = 16
  width_multiplier: float = 1.0
  fc_width: int = vgg.FC_WIDTH
  dropout_rate: float = 0.5
  two_way_output: bool = True
  fc_init: str = 'torchvision'
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """batch['image']: [B, H, W, 3] float32 normalised (224x224 in the papers).

    Returns (logits [B, num_aus] float32, aux): aux['features'] is the
    flattened encoder output [B, F]; with two_way_output aux
    ['two_way_logits'] is [B, num_aus, 2].
    """
    x = batch['image']
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(
          f"CAUD expects batch['image'] of shape [B, H, W, 3], got {x.shape}.")
    x = vgg.Encoder(self.depth, self.width_multiplier, self.dtype,
                    name=ENCODER)(x)
    features = x.reshape(x.shape[0], -1)
    logits, scores = [], []
    for index in range(self.num_aus):
      logit, z = Head(self.width_multiplier, self.fc_width, self.dropout_rate,
                      self.two_way_output, self.dtype, self.fc_init,
                      name=head_name(index))(features, train)
      logits.append(logit)
      scores.append(z)
    aux = {'features': features.astype(jnp.float32)}
    if self.two_way_output:
      aux['two_way_logits'] = jnp.stack(scores, axis=1)
    return jnp.concatenate(logits, axis=1), aux


def _heads(params: PyTree) -> list[PyTree]:
  names = sorted((name for name in params if name.startswith('head_')),
                 key=lambda name: int(name.split('_')[1]))
  expected = [head_name(i) for i in range(len(names))]
  if names != expected or set(params) != {ENCODER, *names}:
    raise ValueError(
        f'Not a CAUD parameter tree: top-level keys {sorted(params)}; '
        f"expected 'encoder' and {expected or ['head_0', '...']}.")
  return [params[name] for name in names]


def join_heads(trees: Sequence[PyTree]) -> dict[str, PyTree]:
  """Merges CAUD parameter trees into one joined model's tree.

  The thesis trains each AU in isolation on the frozen encoder, then joins
  them (sec. 4.2); growing a head is `join_heads([joined, new_au])`.

  Args:
    trees: CAUD 'params' trees in output order, each with the same frozen
      'encoder' and heads head_0..head_{k-1} (k = 1 for a per-AU run).

  Returns:
    {'encoder': ..., 'head_0': ..., 'head_{N-1}': ...} with the heads of
    trees[0] first, then those of trees[1], and so on.

  Raises:
    ValueError: no trees, a tree without the CAUD layout, or encoders that
      differ (the runs did not share one frozen encoder, so the joined model
      would not reproduce them); the message names the tree and leaf.
  """
  if not trees:
    raise ValueError('join_heads needs at least one CAUD parameter tree.')
  encoder = trees[0][ENCODER]
  reference = jax.tree_util.tree_leaves_with_path(encoder)
  heads = []
  for index, tree in enumerate(trees):
    heads.extend(_heads(tree))
    leaves = jax.tree_util.tree_leaves_with_path(tree[ENCODER])
    if [path for path, _ in leaves] != [path for path, _ in reference]:
      raise ValueError(f'join_heads: tree {index} has a different encoder '
                       'layout from tree 0.')
    for (path, a), (_, b) in zip(reference, leaves):
      if a.shape != b.shape or not np.array_equal(np.asarray(a),
                                                  np.asarray(b)):
        raise ValueError(
            f'join_heads: tree {index} encoder leaf '
            f'{jax.tree_util.keystr(path)} differs from tree 0; heads trained '
            'on different encoders cannot share one (was it frozen?).')
  joined = {ENCODER: encoder}
  joined.update({head_name(i): head for i, head in enumerate(heads)})
  return joined


def select_heads(params: PyTree, indices: Sequence[int]) -> dict[str, PyTree]:
  """The tree of a CAUD with only heads `indices` (renumbered in order)."""
  heads = _heads(params)
  return {ENCODER: params[ENCODER],
          **{head_name(i): heads[j] for i, j in enumerate(indices)}}


def adapt_params(model: Model, source: PyTree, target: PyTree) -> PyTree:
  """Maps an EmoNet (vgg.Model) tree onto this model's layout for init_from.

  Copies the encoder and gives every head EmoNet's fc6 and fc7 (the thesis
  starts each head from the emotion network's FC layers and changes only the
  output layer). EmoNet's 'output' (8 emotions) is not mapped: heads keep
  their own output. A source already in the CAUD layout is returned as is.

  Args:
    model: the target Model (for num_aus).
    source: 'params' of vgg.Model (keys encoder, fc6, fc7, output) or of a
      caud.Model.
    target: this model's params or their shapes (jax.eval_shape), used to
      check shapes.

  Returns:
    A (possibly partial) params tree in the target layout.

  Raises:
    ValueError: a mapped leaf whose shape differs from the target's, naming
      its path (e.g. an EmoNet of another width).
  """
  if any(name.startswith('head_') for name in source):
    return source
  missing = [name for name in (ENCODER, 'fc6', 'fc7') if name not in source]
  if missing:
    raise ValueError(f'caud.adapt_params: source lacks {missing}; expected a '
                     f'vgg.Model tree, got keys {sorted(source)}.')
  mapped = {ENCODER: source[ENCODER]}
  for index in range(model.num_aus):
    mapped[head_name(index)] = {'fc6': source['fc6'], 'fc7': source['fc7']}
  vgg.check_shapes(mapped, target)
  return mapped

