"""AUNets: one binary VGG-16 per AU, with optical-flow fusion variants.

Paper: ../shared/papers/aunets_2017.txt sec. 3.2.2 (an independent VGG-16 per
AU, all layers trained, started from the AU's HydraNet, itself from EmoNet),
sec. 3.3.1-3.3.3 and fig. 4 (fusing colour and optical flow), tables 2-3;
facts (2-way softmax output, flow encoding, frozen RGB stream in the pi
fusions) in ../shared/reference/architectures.md.

Fusion variants (`fusion`), inputs batch['image'] and batch['flow'] (both
[B, H, W, 3]; flow is AUNets' flow image, au_jax/preprocess/flow.py):
  'rgb'        VGG-16 on colour                       134,268,738 params
  'flow'       'Alone': VGG-16 on the flow image       134,268,738
  'channels'   6-channel input [rgb, flow]; conv1_1's flow filters start as
               copies of its RGB filters (sec. 3.3.1)  134,270,466
  'horizontal' [rgb | flow] side by side, 224x448; pool5 is 7x14 so fc6 has
               twice the rows, started as copies (3.3.2) 237,029,186
  'pi_conv'    two encoders, pool5 maps concatenated on channels -> fc6
                                                      251,743,874
  'pi_fc6'     two encoder+fc6 streams, concatenated -> fc7  268,525,186
  'pi_fc7'     two encoder+fc6+fc7 streams, concatenated -> output
                                                      268,537,474
(full size, one AU; paper table 3: 134m, 134m, 134m, 237m, 251m, 268m, 268m.)
In the pi fusions the motion stream ('motion_encoder', 'motion_fc6',
'motion_fc7') starts as a copy of the RGB stream and the RGB stream is frozen
up to the fusion point (`frozen_regex`): learnable 237m, 151m, 134m as in
table 3. RGB-stream layers keep vgg.Model's names, so EmoNet, HydraNet and
AUNet-RGB checkpoints load by path; `adapt_params` does the copies.

Output: a 2-way softmax per AU (the authors' code); the returned logit is
z_present - z_absent (vgg.py), num_aus = 1 per AU model in the paper.

Named deviations: the layer fed by a concatenation (fc6 in horizontal and
pi_conv, fc7 in pi_fc6) starts with the RGB weights copied for both halves,
as the paper states for horizontal ("replicating the pre-trained weights");
it does not say how pi_conv/pi_fc6 initialise it. `width_multiplier` narrows the
network for CPU/test variants.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from au_jax.models import layers
from au_jax.models import vgg

Array = jax.Array
PyTree = Any

FUSIONS = ('rgb', 'flow', 'channels', 'horizontal', 'pi_conv', 'pi_fc6',
           'pi_fc7')
# RGB-stream layers frozen in each two-stream fusion (table 3, learnable).
_FROZEN = {'pi_conv': ('encoder',), 'pi_fc6': ('encoder', 'fc6'),
           'pi_fc7': ('encoder', 'fc6', 'fc7')}
MOTION = 'motion_'


def frozen_regex(fusion: str) -> str:
  """config.frozen for a fusion: the RGB stream up to the fusion point."""
  _check_fusion(fusion)
  layers = _FROZEN.get(fusion)
  return f'^({"|".join(layers)})/.*' if layers else ''


def needs_flow(fusion: str) -> bool:
  return _check_fusion(fusion) != 'rgb'


def _check_fusion(fusion: str) -> str:
  if fusion not in FUSIONS:
    raise ValueError(f'AUNets fusion {fusion!r}: expected one of {FUSIONS}.')
  return fusion


class Model(nn.Module):
  """One AUNet (one AU in the paper; num_aus > 1 shares all layers).

  Attributes:
    num_aus: outputs (1 per AU model as in the paper).
    fusion: one of FUSIONS (module docstring).
    depth, width_multiplier, fc_width, dropout_rate, two_way_output: as
      vgg.Model.
    axis_name: accepted for the model contract; VGG has no batch-norm.
    dtype: compute dtype; parameters and returned arrays stay float32.
  """
  num_aus: int
  fusion: str = 'rgb'
  depth: int = 16
  width_multiplier: float = 1.0
  fc_width: int = vgg.FC_WIDTH
  dropout_rate: float = 0.5
  two_way_output: bool = True
  axis_name: str | None = None
  dtype: Any = jnp.float32

  def _inputs(self, batch: dict[str, Array]) -> tuple[Array, Array | None]:
    rgb = batch.get('image')
    flow = batch.get('flow')
    for key, value in (('image', rgb), ('flow', flow)):
      if key == 'flow' and not needs_flow(self.fusion):
        continue
      if key == 'image' and self.fusion == 'flow':
        continue
      if value is None:
        raise ValueError(f"AUNets fusion {self.fusion!r} needs batch[{key!r}] "
                         f'[B, H, W, 3]; the batch has {sorted(batch)}.')
      if value.ndim != 4 or value.shape[-1] != 3:
        raise ValueError(f'AUNets: batch[{key!r}] must be [B, H, W, 3], got '
                         f'{value.shape}.')
    if rgb is not None and flow is not None and rgb.shape != flow.shape:
      raise ValueError(f"AUNets: batch['image'] {rgb.shape} and "
                       f"batch['flow'] {flow.shape} differ in shape.")
    return rgb, flow

  @nn.compact
  def __call__(self, batch: dict[str, Array],
               train: bool) -> tuple[Array, dict[str, Array]]:
    """Returns (logits [B, num_aus] float32, aux).

    aux['features']: the input of the output layer [B, F]; with
    two_way_output, aux['two_way_logits'] [B, num_aus, 2].
    """
    fusion = _check_fusion(self.fusion)
    rgb, flow = self._inputs(batch)
    encoder = lambda name: vgg.Encoder(
        self.depth, self.width_multiplier, self.dtype, name=name)
    flatten = lambda x: x.reshape(x.shape[0], -1)
    dropout = lambda: layers.Dropout(self.dropout_rate, deterministic=not train)
    if fusion in ('rgb', 'flow', 'channels', 'horizontal'):
      if fusion == 'rgb':
        x = rgb
      elif fusion == 'flow':
        x = flow
      else:  # Channels: [B, H, W, 6]; horizontal: [B, H, 2W, 3].
        x = jnp.concatenate([rgb, flow], axis=-1 if fusion == 'channels' else 2)
      features = vgg.fully_connected(
          self, flatten(encoder('encoder')(x)), train)
    else:
      depth = {'pi_conv': 0, 'pi_fc6': 1, 'pi_fc7': 2}[fusion]
      names = ('fc6', 'fc7')
      streams = []
      for prefix, image in (('', rgb), (MOTION, flow)):
        x = encoder(prefix + 'encoder')(image)
        if depth == 0:  # Concatenate the pool5 maps on channels.
          streams.append(x)
          continue
        streams.append(vgg.fully_connected(
            self, flatten(x), train,
            names=tuple(prefix + name for name in names[:depth])))
      x = jnp.concatenate(streams, axis=-1)
      if depth == 0:
        features = vgg.fully_connected(self, flatten(x), train)
      elif depth == 1:
        features = vgg.fully_connected(self, dropout()(x), train,
                                       names=('fc7',))
      else:
        features = x
    z = vgg.output_layer(self.num_aus, self.two_way_output, self.dtype)(
        dropout()(features))
    logits, aux = vgg.split_output(z, self.num_aus, self.two_way_output)
    aux['features'] = features.astype(jnp.float32)
    return logits, aux


def _duplicate_rows(kernel: Array, channels: int, axis: str) -> Array:
  """[h*w*c, N] -> [2*h*w*c, N] with the second half a copy of the first.

  axis 'width': the input map was [h, 2w, c] (horizontal: rgb left, flow
  right); 'channels': [h, w, 2c] (pi_conv); 'features': [2F] (pi_fc6).
  The source map is square (the papers' 224x224 RGB networks).
  """
  kernel = np.asarray(kernel)
  rows, units = kernel.shape
  if axis == 'features':
    return np.concatenate([kernel, kernel], axis=0)
  side = int(round(np.sqrt(rows // channels)))
  if side * side * channels != rows:
    raise ValueError(f'init_from: a {rows}-row fc6 kernel is not a square '
                     f'pool5 map of {channels} channels.')
  grid = kernel.reshape(side, side, channels, units)
  grid = np.concatenate([grid, grid], axis=1 if axis == 'width' else 2)
  return grid.reshape(2 * rows, units)


def adapt_params(model: Model, source: PyTree, target: PyTree) -> PyTree:
  """Maps an RGB network's params onto `model`'s fusion layout (init_from).

  The source is EmoNet (vgg.Model), a one-head HydraNet (caud.Model, its
  head_0 is used: an AUNet starts from its AU's HydraNet) or an AUNet; the
  result is a params tree in the target layout holding (sec. 3.3):
    * the RGB stream copied by name; EmoNet's 8-way 'output' is left out
      when its shape differs (the AU output starts random);
    * 'channels': conv1_1's kernel [3, 3, 3, K] -> [3, 3, 6, K], the flow
      filters a copy of the RGB filters;
    * 'horizontal' / 'pi_conv': fc6's rows duplicated for the flow half of
      the pool5 map (width / channel axis); 'pi_fc6': fc7's rows duplicated;
    * pi fusions: 'motion_encoder', 'motion_fc6', 'motion_fc7' = copies of
      the RGB stream's layers.
  Leaves whose source already has the target's shape are copied unchanged,
  so a checkpoint of the same fusion passes through.

  Args:
    model: the target Model.
    source: the source run's 'params'.
    target: the target's params or their shapes (jax.eval_shape).

  Returns:
    A (possibly partial) params tree in the target layout.

  Raises:
    ValueError: naming the leaf that cannot be mapped onto the target shape.
  """
  fusion = _check_fusion(model.fusion)
  if 'head_0' in source:  # A HydraNet: its first head carries the FC layers.
    heads = [name for name in source if name.startswith('head_')]
    if len(heads) != 1:
      raise ValueError(
          f'init_from: a HydraNet with {len(heads)} heads; an AUNet starts '
          "from one AU's head (select it with caud.select_heads).")
    source = {'encoder': source['encoder'], **source['head_0']}
  mapped = {}
  for name, layer in source.items():
    targets = [name]
    if fusion.startswith('pi_') and not name.startswith(MOTION):
      targets.append(MOTION + name)
    for target_name in targets:
      if target_name not in target:
        continue
      mapped[target_name] = jax.tree.map(np.asarray, layer)
  # Widen the fused or extra-input layers where the shapes say so.
  channels = vgg.scaled(vgg.BLOCK_WIDTHS[-1], model.width_multiplier)
  if 'encoder' in mapped:
    kernel = mapped['encoder']['conv1_1']['kernel']
    wanted = target['encoder']['conv1_1']['kernel'].shape
    if (kernel.shape[3] == wanted[3]
        and wanted[2] == 2 * kernel.shape[2]):
      mapped['encoder'] = dict(mapped['encoder'])
      mapped['encoder']['conv1_1'] = dict(
          mapped['encoder']['conv1_1'],
          kernel=np.concatenate([kernel, kernel], axis=2))
  for name, axis in (('fc6', 'width' if fusion == 'horizontal' else 'channels'),
                     ('fc7', 'features')):
    if name not in mapped:
      continue
    kernel = mapped[name]['kernel']
    wanted = target[name]['kernel'].shape
    if kernel.shape[1] == wanted[1] and wanted[0] == 2 * kernel.shape[0]:
      mapped[name] = dict(mapped[name], kernel=_duplicate_rows(
          kernel, channels, axis))
  if 'output' in mapped and (mapped['output']['kernel'].shape !=
                             tuple(target['output']['kernel'].shape)):
    del mapped['output']
  vgg.check_shapes(mapped, target)
  return mapped

