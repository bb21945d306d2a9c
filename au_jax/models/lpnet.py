"""LP-Net: Local relationship learning with Person-specific shape
regularisation (Niu, Han, Yang, Huang & Shan, CVPR 2019).

Paper: ../shared/papers/lpnet_cvpr2019.txt. This module implements
  - the stem (section 3.1): ResNet-34 up to its last convolutional stage; its
    (H/32)x(W/32) map gives k local features (k = 49 at 224 px);
  - L-Net (section 3.2, eq. 1): C LSTMs, one per AU with its own parameters,
    each run over the k local features; the per-position outputs are averaged
    over k to give AU j's logit (the sigmoid is applied by the loss);
  - P-Net (section 3.3, eqs. 2 and 4): 68 landmarks normalised by the
    eye-centre midpoint and the interpupillary distance (eq. 2), an MLP
    136 -> 256 -> 512 = f_s (figure 4), and one term m_j per AU added to the
    L-Net logit (eq. 4);
  - what the losses need (eqs. 3, 5, 6 live in au_jax/methods/lpnet.py):
    aux['au_feature'] = f_au, the mean of the k local features, and
    aux['shape_feature'] = f_s, for L_r = |f_au . f_s|.
Ablation switches (table 3): use_lnet=False is "Stem-Net" (global average
pooling + Dense 'output'); use_pnet adds P-Net to either head.

Choices the paper leaves open (reference/architectures.md), named:
  - LSTM hidden size `lstm_features` (not stated); one layer, forward
    direction, positions in raster order (row by row, left to right), zero
    initial state; the step output h_i is read out by a per-AU Dense(1), so
    LSTM_j(f_i) in eq. 1 is a scalar. Gates i, f, g, o as in PyTorch's LSTM
    with one bias per gate.
  - P-Net activations: ReLU after the 256-d layer; f_s is the linear 512-d
    output (no ReLU) and m = Dense(C)(f_s). The stem's f_au is post-ReLU
    (non-negative), so a non-negative f_s could satisfy L_r = 0 only by
    disjoint support or by collapsing to zero; a signed f_s can be orthogonal
    to f_au and still carry shape. f_s has the stem's channel count (512 for
    ResNet-34 at width 64) so the inner product of eq. 3 is defined for
    narrow CPU stems too.
  - Eye centres: the mean of iBUG-68 points 37-42 and 43-48 (1-based).
  - Absent landmarks (both coordinates -1, the records' convention): an
    absent point enters P-Net as (0, 0), the normalised eye-centre position;
    an example whose eye centres cannot be formed (an eye with no present
    point) or whose interpupillary distance is below 1e-3 px has no usable
    shape: all its P-Net inputs are 0, its m_j are 0 (the prediction is
    L-Net's alone) and aux['shape_valid'] = 0 removes it from L_r. No
    division by a zero distance ever happens, so no NaNs.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from au_jax.models import resnet

Array = jax.Array

NUM_LANDMARKS = 68
# iBUG-68, 0-based: right-eye contour of the subject 36-41, left eye 42-47.
EYE_POINTS = (tuple(range(36, 42)), tuple(range(42, 48)))
_MIN_EYE_DISTANCE = 1e-3  # pixels


def normalise_landmarks(landmarks: Array) -> tuple[Array, Array]:
  """Eq. 2: P_norm = (P - P_center) / d, with absent points masked.

  Args:
    landmarks: [B, 68, 2] (x, y) pixels; a point with both coordinates -1 is
      absent.

  Returns:
    normalised [B, 68, 2] float32 (absent points and invalid examples are 0)
    and valid [B] float32 (1 where both eye centres and a non-zero
    interpupillary distance exist).
  """
  landmarks = jnp.asarray(landmarks, jnp.float32)
  if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
    raise ValueError(f'P-Net expects landmarks [B, {NUM_LANDMARKS}, 2], got '
                     f'{landmarks.shape}.')
  present = ~jnp.all(landmarks == -1.0, axis=-1)  # [B, 68]
  centres, eye_found = [], []
  for points in EYE_POINTS:
    eye = landmarks[:, points]  # [B, 6, 2]
    eye_present = present[:, points].astype(jnp.float32)[..., None]
    count = eye_present.sum(axis=1)  # [B, 1]
    centres.append((eye * eye_present).sum(axis=1) / jnp.maximum(count, 1.0))
    eye_found.append(count[:, 0] > 0)
  distance = jnp.linalg.norm(centres[0] - centres[1], axis=-1)  # [B]
  valid = eye_found[0] & eye_found[1] & (distance > _MIN_EYE_DISTANCE)
  centre = (centres[0] + centres[1]) / 2.0  # [B, 2]
  # The where-guarded divisor keeps gradients and values finite.
  safe_distance = jnp.where(valid, distance, 1.0)
  normalised = (landmarks - centre[:, None]) / safe_distance[:, None, None]
  keep = present & valid[:, None]
  normalised = jnp.where(keep[..., None], normalised, 0.0)
  return normalised, valid.astype(jnp.float32)


class _LSTMStep(nn.Module):
  """One LSTM step; the input projection is precomputed outside the scan.

  carry (c, h): [B, H] each; input_gates: [B, 4H] = W_x f_i + b.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry: tuple[Array, Array],
               input_gates: Array) -> tuple[tuple[Array, Array], Array]:
    c, h = carry
    gates = input_gates + nn.Dense(
        4 * self.features, use_bias=False, dtype=self.dtype,
        kernel_init=nn.initializers.orthogonal(), name='hidden')(h)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


class AuLSTM(nn.Module):
  """One AU's LSTM over the k local features (eq. 1, inner part).

  Attributes:
    features: LSTM hidden size.
    dtype: compute dtype.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, local_features: Array) -> Array:
    """local_features: [B, k, D] -> LSTM_j(f_i) for every position [B, k]."""
    batch = local_features.shape[0]
    # W_x f_i + b for all k positions in one matmul; only the recurrence
    # is sequential.
    input_gates = nn.Dense(4 * self.features, dtype=self.dtype,
                           name='input')(local_features)  # [B, k, 4H]
    scan = nn.scan(_LSTMStep, variable_broadcast='params',
                   split_rngs={'params': False}, in_axes=1, out_axes=1)
    zeros = jnp.zeros((batch, self.features), input_gates.dtype)
    _, outputs = scan(self.features, self.dtype, name='step')(
        (zeros, zeros), input_gates)  # [B, k, H]
    return nn.Dense(1, dtype=self.dtype, name='readout')(outputs)[..., 0]


class LNet(nn.Module):
  """C per-AU LSTMs batched with nn.vmap (own parameters per AU).

  Every parameter of `lstm` has a leading axis of size C: slice j is AU j's
  LSTM, which sees all k local features (section 3.2).

  Attributes:
    num_aus: C.
    features: LSTM hidden size.
    dtype: compute dtype.
  """
  num_aus: int
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, local_features: Array) -> tuple[Array, Array]:
    """local_features: [B, k, D] -> (logits [B, C], per-position [B, k, C]).

    logits[:, j] = (1/k) sum_i LSTM_j(f_i) (eq. 1 before the sigmoid).
    """
    per_au = nn.vmap(
        AuLSTM, variable_axes={'params': 0}, split_rngs={'params': True},
        in_axes=None, out_axes=-1, axis_size=self.num_aus)
    per_position = per_au(self.features, self.dtype, name='lstm')(
        local_features)  # [B, k, C]
    return per_position.mean(axis=1), per_position


class PNet(nn.Module):
  """Landmarks -> f_s -> per-AU terms m_j (eqs. 2 and 4, figure 4).

  Attributes:
    num_aus: C.
    shape_features: size of f_s (= the stem's channel count).
    hidden: first layer width (figure 4: 256).
    dtype: compute dtype.
  """
  num_aus: int
  shape_features: int = 512
  hidden: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, landmarks: Array) -> tuple[Array, Array, Array]:
    """landmarks: [B, 68, 2] pixels -> (m [B, C], f_s [B, S], valid [B])."""
    normalised, valid = normalise_landmarks(landmarks)
    x = normalised.reshape(normalised.shape[0], -1)  # [B, 136]
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x))
    shape_feature = nn.Dense(self.shape_features, dtype=self.dtype,
                             name='fc2')(x)
    terms = nn.Dense(self.num_aus, dtype=self.dtype,
                     name='terms')(shape_feature)
    # No usable shape -> no correction (the prediction is L-Net's alone).
    terms = terms * valid[:, None].astype(terms.dtype)
    return terms, shape_feature, valid


class Model(nn.Module):
  """LP-Net and its ablations (table 3).

  Attributes:
    num_aus: outputs C (classes when pretraining the stem with 'classify').
    depth: stem ResNet depth (paper: 34; table 3 also 18 and 50).
    width: stem width (64 = the standard ResNet; smaller for CPU: named).
    use_lnet: True = L-Net head (eq. 1); False = Stem-Net (global average
      pooling + Dense 'output').
    use_pnet: add P-Net's m_j to the logits (eq. 4).
    lstm_features: LSTM hidden size (not stated in the paper).
    pnet_hidden: P-Net's first layer width (figure 4: 256).
    axis_name: pmap axis for cross-device batch-norm statistics.
    dtype: compute dtype; parameters and returned arrays stay float32.
  """
  num_aus: int
  depth: int = 34
  width: int = 64
  use_lnet: bool = True
  use_pnet: bool = True
  lstm_features: int = 128
  pnet_hidden: int = 256
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """Forward pass.

    Args:
      batch: 'image' [B, H, W, 3] float32 normalised; 'landmarks' [B, 68, 2]
        pixels in the input crop (-1 absent), needed when use_pnet.
      train: batch-norm uses batch statistics when True.

    Returns:
      logits [B, C] float32 and aux with 'au_feature' f_au [B, D] (mean of
      the k local features; also as 'features'), plus, with P-Net,
      'shape_feature' f_s [B, D], 'shape_terms' m [B, C] and 'shape_valid'
      [B]; with L-Net, 'local_logits' [B, k, C].
    """
    image = batch['image']
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(
          f"LP-Net expects batch['image'] of shape [B, H, W, 3], got "
          f'{image.shape}.')
    feature_map = resnet.ResNet(self.depth, self.width, self.axis_name,
                                self.dtype, name='stem')(image, train)
    batch_size, height, width, channels = feature_map.shape
    local = feature_map.reshape(batch_size, height * width, channels)
    au_feature = local.mean(axis=1)  # f_au (eq. 3)
    aux = {'au_feature': au_feature.astype(jnp.float32)}
    aux['features'] = aux['au_feature']  # The trainer's generic name.
    if self.use_lnet:
      logits, per_position = LNet(self.num_aus, self.lstm_features,
                                  self.dtype, name='lnet')(local)
      aux['local_logits'] = per_position.astype(jnp.float32)
    else:
      logits = nn.Dense(self.num_aus, dtype=self.dtype,
                        name='output')(au_feature)
    if self.use_pnet:
      if 'landmarks' not in batch:
        raise ValueError("LP-Net with use_pnet=True needs batch['landmarks'] "
                         '[B, 68, 2].')
      terms, shape_feature, valid = PNet(
          self.num_aus, channels, self.pnet_hidden, self.dtype,
          name='pnet')(batch['landmarks'])
      logits = logits + terms  # eq. 4
      aux.update(shape_feature=shape_feature.astype(jnp.float32),
                 shape_terms=terms.astype(jnp.float32), shape_valid=valid)
    return logits.astype(jnp.float32), aux

