"""The authors' released checkpoints as au_jax run directories.

The AUNets release (BCV-Uniandes/AUNets: one VGG-16 per BP4D AU and fusion
variant, PyTorch state_dicts named as its models/vgg_pytorch.py) becomes a
finished weights-only run directory that `au_jax.predict` loads
(`convert_aunets_release`):

  python -m au_jax.releases convert-aunets --input=AU12.pth --au=12 \
      --variant=rgb --output=runs/aunets_release/au_12
  python -m au_jax.predict --checkpoint=runs/aunets_release/au_12 \
      --input=video.mp4

A .pth is read only through `torch.load(path, weights_only=True)`
(`weights.read_pytorch_checkpoint`, torch an optional dependency); a .npz
or .safetensors of the same tensors needs no torch. Tensor layouts and
conversions are au_jax/weights.py's.
"""

import argparse
import importlib
import json
import os
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from au_jax import aus as aus_lib
from au_jax import checkpointing
from au_jax import models
from au_jax import runs
from au_jax import weights

PyTree = Any


# ----------------------------------------------------------------------------
# The AUNets release


# au_jax fusion -> the release's OF_option (models/vgg_pytorch.py).
RELEASE_VARIANTS = {'rgb': 'None', 'flow': 'Alone', 'channels': 'Channels',
                    'horizontal': 'Horizontal', 'pi_conv': 'Conv',
                    'pi_fc6': 'FC6', 'pi_fc7': 'FC7'}
# The release's input: ToTensor() (RGB in [0, 1]) then Normalize with this
# mean and std 1 (its data_loader.py, imagenet=False); flow images too.
RELEASE_PIXEL_MEAN = (0.485, 0.456, 0.406)
RELEASE_PIXEL_STD = (1.0, 1.0, 1.0)
RELEASE_DATA_VERSION = 'aunets-release:bp4d'


def release_fusion(variant: str) -> str:
  """An au_jax fusion name from au_jax's or the release's name ('Conv')."""
  by_release = {v.lower(): k for k, v in RELEASE_VARIANTS.items()}
  fusion = variant if variant in RELEASE_VARIANTS else by_release.get(
      variant.lower())
  if fusion is None:
    raise ValueError(
        f'AUNets release variant {variant!r}: expected one of '
        f'{sorted(RELEASE_VARIANTS)} (or the release names '
        f'{sorted(RELEASE_VARIANTS.values())}); the release\'s Vertical '
        'has no au_jax fusion.')
  return fusion


def release_layers(fusion: str) -> list[tuple[str, str, str]]:
  """(au_jax layer, release prefix, kind) of one release variant.

  kind: 'conv', 'pool5' (a dense layer fed by the flattened pool5 map),
  'dense' or 'output' (the one-logit classifier). In pi_fc7 the motion
  stream's fc6/fc7 come from `classifier_rgb`: the release's forward pass
  sends both streams through it (`classifier_of` is built, never used), so
  that is the function the checkpoint computes.
  """
  two_stream = fusion.startswith('pi_')
  layers = []
  for name, prefix in weights.torchvision_names(16).items():
    if not name.startswith('conv'):
      continue
    index = prefix.split('.')[1]
    if two_stream:
      layers.append((f'encoder/{name}', f'features_rgb.{index}', 'conv'))
      layers.append((f'motion_encoder/{name}', f'features_of.{index}',
                     'conv'))
    else:
      layers.append((f'encoder/{name}', f'features.{index}', 'conv'))
  if fusion == 'pi_fc6':
    return layers + [('fc6', 'classifier_rgb.0', 'pool5'),
                     ('motion_fc6', 'classifier_of.0', 'pool5'),
                     ('fc7', 'classifier.0', 'dense'),
                     ('output', 'classifier.3', 'output')]
  if fusion == 'pi_fc7':
    return layers + [('fc6', 'classifier_rgb.0', 'pool5'),
                     ('fc7', 'classifier_rgb.3', 'dense'),
                     ('motion_fc6', 'classifier_rgb.0', 'pool5'),
                     ('motion_fc7', 'classifier_rgb.3', 'dense'),
                     ('output', 'classifier.0', 'output')]
  return layers + [('fc6', 'classifier.0', 'pool5'),
                   ('fc7', 'classifier.3', 'dense'),
                   ('output', 'classifier.6', 'output')]


def _abstract_params(config: ml_collections.ConfigDict) -> weights.PyTree:
  size = int(config.crop_size)
  image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  batch = {'image': image, 'flow': image}
  model = models.create(config)
  return jax.eval_shape(
      lambda b: model.init(jax.random.key(0), b, train=False), batch)['params']


def release_params(arrays: dict[str, np.ndarray], path: str,
                   config: ml_collections.ConfigDict
                   ) -> tuple[dict[str, Any], list[str]]:
  """An AUNets release state_dict as the params of config's aunets.Model.

  Mapping (module docstring for the general conversions):
    * a leading 'model.' (the release's Classifier wrapper) or 'module.'
      (DataParallel) is dropped from every key;
    * layers by `release_layers(config.model.fusion)`; pool5-fed dense rows
      permuted CHW -> HWC for the map they read (7x7x512; 7x14x512 side by
      side in horizontal; 7x7x1024, RGB channels first, in pi_conv);
    * the release's ONE logit z (BCEWithLogitsLoss: p = sigmoid(z)) into
      au_jax's 2-way output (config.model.two_way_output): the 'absent'
      column and bias are zero and the 'present' column is the release's
      row, so au_jax's logit z_present - z_absent is z exactly and
      p = sigmoid(z) as in the release. A 2-row (2-way softmax) classifier
      maps row by row; a one-unit au_jax output takes the row as is;
    * input scaling: the release feeds (x - mean) with std 1
      (RELEASE_PIXEL_*), au_jax (x - mean) / config.pixel_std. conv1_1's
      input channels are multiplied by config.pixel_std (both streams; both
      halves in 'channels'), so conv1_1 sees the same values; zero padding
      stays zero in both. config.pixel_mean must equal the release's.

  Returns:
    (params, the file's keys left unused).

  Raises:
    ValueError: missing, unexpected or differently shaped tensors (naming
      the file, tensor and the variant the keys look like), or another
      pixel mean.
  """
  fusion = config.model.fusion
  stripped = ''
  while prefix := next((p for p in ('model.', 'module.') if arrays and all(
      key.startswith(p) for key in arrays)), None):
    arrays = {key[len(prefix):]: value for key, value in arrays.items()}
    stripped += prefix
  if not np.allclose(config.pixel_mean, RELEASE_PIXEL_MEAN, atol=1e-6):
    raise ValueError(
        f'config.pixel_mean={tuple(config.pixel_mean)}: the AUNets release '
        f'was trained on inputs minus {RELEASE_PIXEL_MEAN}; only the std '
        'can be folded into conv1_1.')
  layers = release_layers(fusion)
  expected = {f'{prefix}.{kind}' for _, prefix, _ in layers
              for kind in ('weight', 'bias')}
  unused = sorted(set(arrays) - expected)
  allowed_unused = [key for key in unused
                    if fusion == 'pi_fc7' and key.startswith('classifier_of.')]
  missing = sorted(expected - set(arrays))
  unexpected = sorted(set(unused) - set(allowed_unused))
  if missing or unexpected:
    raise ValueError(
        f'{path}: not an AUNets release checkpoint of variant {fusion!r} '
        f'({RELEASE_VARIANTS[fusion]}): missing {missing[:5]}, unexpected '
        f'{unexpected[:5]}; its keys look like variant '
        f'{_guess_release_variant(arrays)!r}.')
  abstract = _abstract_params(config)  # Shapes only.
  target = weights.flat_tree(abstract)
  scale = np.asarray(config.pixel_std, np.float32) / np.asarray(
      RELEASE_PIXEL_STD, np.float32)
  source, origins = {}, {}
  for layer, prefix, kind in layers:
    weight = np.asarray(arrays[f'{prefix}.weight'], np.float32)
    bias = np.asarray(arrays[f'{prefix}.bias'], np.float32)
    if kind == 'conv':
      kernel = weights.conv_kernel(weight)
      if layer.endswith('conv1_1'):
        repeats = kernel.shape[2] // scale.size
        kernel = kernel * np.tile(scale, max(repeats, 1))[None, None, :, None]
    elif kind == 'output':
      kernel, bias = _output_layer(weight, bias, target, path, prefix)
    else:
      kernel = np.ascontiguousarray(weight.T)
      if kind == 'pool5':
        kernel = _pool5_rows(kernel, arrays, fusion, path, prefix)
    for name, value, part in (('kernel', kernel, 'weight'),
                              ('bias', bias, 'bias')):
      source[f'{layer}/{name}'] = value
      origins[f'{layer}/{name}'] = f'{prefix}.{part}'
  missing_here = sorted(set(target) - set(source))
  if missing_here:
    raise ValueError(f'{path}: the model has {missing_here[:5]}, which the '
                     f'release variant {fusion!r} does not fill.')
  # Every leaf is replaced: the shapes tree becomes the params.
  return (weights.place_tensors(path, abstract, source, origins),
          [stripped + key for key in unused])


def _pool5_rows(kernel: np.ndarray, arrays: dict[str, np.ndarray],
                fusion: str, path: str, prefix: str) -> np.ndarray:
  """A pool5-fed dense kernel [C*H*W, N] -> HWC rows (release_params)."""
  conv5 = 'features.28.weight' if 'features.28.weight' in arrays else (
      'features_rgb.28.weight')
  channels = arrays[conv5].shape[0] * (2 if fusion == 'pi_conv' else 1)
  aspect = 2 if fusion == 'horizontal' else 1
  cells = kernel.shape[0] // channels
  height = int(round(np.sqrt(cells / aspect)))
  if height * height * aspect * channels != kernel.shape[0]:
    raise ValueError(f'{path}: {prefix}.weight has {kernel.shape[0]} '
                     f'inputs: not a pool5 map of {channels} channels for '
                     f'variant {fusion!r}.')
  return weights.chw_rows_to_hwc(kernel, channels, height, height * aspect)


def _output_layer(weight: np.ndarray, bias: np.ndarray,
                  target: dict[str, Any], path: str,
                  prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """The release classifier [K, F] as au_jax's output (release_params)."""
  units = tuple(target['output/kernel'].shape)[1]
  if weight.shape[0] == units:
    return np.ascontiguousarray(weight.T), bias
  if weight.shape[0] == 1 and units == 2:
    kernel = np.zeros((weight.shape[1], 2), np.float32)
    kernel[:, 1] = weight[0]
    return kernel, np.array([0.0, bias[0]], np.float32)
  raise ValueError(f'{path}: {prefix}.weight has {weight.shape[0]} outputs; '
                   f'the model has {units} (one AU per converted model).')


def _guess_release_variant(arrays: dict[str, np.ndarray]) -> str:
  """The variant a release state_dict's keys and shapes suggest."""
  if 'features_rgb.0.weight' in arrays:
    if 'classifier_rgb.3.weight' in arrays:
      return 'pi_fc7'
    return 'pi_fc6' if 'classifier_rgb.0.weight' in arrays else 'pi_conv'
  if 'features.0.weight' not in arrays:
    return 'none of them'
  if arrays['features.0.weight'].shape[1] == 6:
    return 'channels'
  fc6 = arrays.get('classifier.0.weight')
  conv5 = arrays.get('features.28.weight')
  if fc6 is not None and conv5 is not None:
    cells = fc6.shape[1] // max(conv5.shape[0], 1)
    side = int(round(np.sqrt(cells)))
    if side * side != cells:
      return 'horizontal'
  return 'rgb or flow'


def aunets_release_config(config_file: str,
                          fusion: str) -> ml_collections.ConfigDict:
  """`<config_file>:paper-<fusion>` (configs/aunets.py), loaded as
  au_jax.main loads a config file."""
  if not os.path.isfile(config_file):
    raise FileNotFoundError(
        f'{config_file} not found: run from the au_jax checkout or pass '
        '--config=<path to configs/aunets.py>.')
  spec = importlib.util.spec_from_file_location('_aunets_config',
                                                config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(f'paper-{fusion}')


def convert_aunets_release(source: str, au: int, variant: str,
                           output_dir: str,
                           config: ml_collections.ConfigDict | None = None,
                           fold: int | None = None,
                           config_file: str = 'configs/aunets.py') -> str:
  """Writes an au_jax run directory holding one released AUNet.

  The directory is a finished weights-only run (checkpointing: config.json,
  best_weights/) that `au_jax.predict` loads, plus converted_from.json
  (the source file, its variant and the mapping notes). The config is
  configs/aunets.py:paper-<fusion> with aus=(au,) (run fields as a trained
  per-AU run has them); its decision threshold is config.threshold (0.5:
  the release tuned one on validation data that is not in the file).

  Args:
    source: the release's .pth (read by torch.load(weights_only=True);
      torch needed) or the same tensors as .npz / .safetensors.
    au: the BP4D AU the model detects.
    variant: au_jax fusion name or the release's OF_option name.
    output_dir: the run directory to create (must not hold a run).
    config: the base config instead of `config_file`'s (tests use a
      narrow one); its model.fusion must be the variant's.
    fold: the BP4D fold the model was trained on, if known (run metadata).
    config_file: configs/aunets.py.

  Raises:
    ValueError: unknown variant or AU, an existing run in output_dir, or
      a file that does not fit (release_params).
  """
  fusion = release_fusion(variant)
  if int(au) not in aus_lib.BP4D_AUS:
    raise ValueError(f'--au={au}: the release has one model per BP4D AU '
                     f'{aus_lib.BP4D_AUS}.')
  if config is None:
    config = aunets_release_config(config_file, fusion)
  if config.model.fusion != fusion:
    raise ValueError(f'config.model.fusion={config.model.fusion!r} but the '
                     f'variant is {fusion!r}.')
  output_dir = os.path.abspath(os.path.expanduser(output_dir))
  if os.path.exists(os.path.join(output_dir, 'config.json')):
    raise ValueError(f'{output_dir} already holds a run; choose another '
                     '--output or delete it.')
  config = runs.run_config(config, runs.RunKey(
      fold=runs.ALL if fold is None else int(fold), au=int(au)))
  params, unused = release_params(weights.read_any(source), source, config)
  os.makedirs(output_dir, exist_ok=True)
  checkpointing.write_config(config, output_dir)
  checkpointing.save_weights_only(
      output_dir, {'params': params, 'batch_stats': {}}, 0,
      checkpointing.fingerprint(config, RELEASE_DATA_VERSION),
      config.num_train_steps)
  with open(os.path.join(output_dir, 'converted_from.json'), 'w') as f:
    json.dump({
        'source': os.path.abspath(source), 'au': int(au), 'fusion': fusion,
        'release_variant': RELEASE_VARIANTS[fusion],
        'unused_source': unused,
        'notes': [
            'one release logit z -> 2-way output (absent 0, present z): '
            'au_jax logit = z, probability sigmoid(z)',
            'conv1_1 input channels x config.pixel_std: the release feeds '
            f'x - {RELEASE_PIXEL_MEAN} with std 1',
            'the release resizes the face crop to 224 (no centre crop); '
            'au_jax uses config.resize_size / crop_size'] + (
                ['pi_fc7: motion fc6/fc7 from classifier_rgb, as the '
                 "release's forward pass"] if fusion == 'pi_fc7' else [])},
              f, indent=1)
  return output_dir


# ----------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m au_jax.releases convert-aunets ...`."""
  parser = argparse.ArgumentParser(prog='python -m au_jax.releases')
  commands = parser.add_subparsers(dest='command', required=True)
  release = commands.add_parser(
      'convert-aunets', help='an AUNets release checkpoint -> a run dir')
  release.add_argument('--input', required=True,
                       help='AU<nn>.pth (.npz / .safetensors)')
  release.add_argument('--au', type=int, required=True)
  release.add_argument('--variant', default='rgb',
                       help=f'one of {sorted(RELEASE_VARIANTS)}')
  release.add_argument('--output', required=True, help='run directory')
  release.add_argument('--fold', type=int, default=None)
  release.add_argument('--config', default='configs/aunets.py')
  args = parser.parse_args(argv)
  try:
    directory = convert_aunets_release(
        args.input, args.au, args.variant, args.output, fold=args.fold,
        config_file=args.config)
    print(f'Wrote {directory}: python -m au_jax.predict '
          f'--checkpoint={directory} --input=<video or images>')
  except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
    print(f'au_jax.releases: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
