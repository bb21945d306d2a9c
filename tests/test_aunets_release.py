"""The AUNets release (PyTorch state_dicts of models/vgg_pytorch.py) as au_jax
runs: converted by au_jax.weights, loaded by au_jax.predict, and computing
the release's forward pass (a float64 numpy version of it, written here)."""

import json
import os

import jax
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import pytest

from au_jax import releases
from au_jax import weights
from au_jax.predict import run as predict_run
from configs import aunets as aunets_config

jax.config.update('jax_disable_most_optimizations', True)

CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'configs', 'aunets.py')
# The release's conv indices in `features` (VGG-16: conv, ReLU, pools).
CONV_INDICES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
# Width 1/16 of VGG-16 (the model's width_multiplier), fc 4096 / 16.
WIDTHS = (4, 8, 16, 32, 32)
FC = 256
CROP = 64  # pool5 2x2 (2x4 side by side): fc6 rows need CHW -> HWC.
MEAN = np.array([0.485, 0.456, 0.406])
AU = 12


def _features(rng, prefix, inputs=3):
  state = {}
  for block, indices in enumerate(CONV_INDICES):
    for index in indices:
      width = WIDTHS[block]
      state[f'{prefix}.{index}.weight'] = rng.normal(
          0, np.sqrt(2 / (9 * inputs)), (width, inputs, 3, 3))
      state[f'{prefix}.{index}.bias'] = rng.normal(0, 0.1, width)
      inputs = width
  return state


def _linear(rng, name, units, fan_in):
  return {f'{name}.weight': rng.normal(0, np.sqrt(2 / fan_in),
                                       (units, fan_in)),
          f'{name}.bias': rng.normal(0, 0.1, units)}


def release_state(fusion, seed=0):
  """A state_dict in the release's names (the Classifier wrapper's
  'model.' prefix, one output logit) for one OF_option."""
  rng = np.random.default_rng(seed)
  cells = (CROP // 32)**2
  state = {}
  if fusion.startswith('pi_'):
    state.update(_features(rng, 'features_rgb'))
    state.update(_features(rng, 'features_of'))
  else:
    state.update(_features(rng, 'features', 6 if fusion == 'channels' else 3))
  if fusion in ('rgb', 'flow', 'channels', 'horizontal', 'pi_conv'):
    fan_in = 32 * cells * (2 if fusion in ('horizontal', 'pi_conv') else 1)
    state.update(_linear(rng, 'classifier.0', FC, fan_in))
    state.update(_linear(rng, 'classifier.3', FC, FC))
    state.update(_linear(rng, 'classifier.6', 1, FC))
  elif fusion == 'pi_fc6':
    for stream in ('classifier_rgb', 'classifier_of'):
      state.update(_linear(rng, f'{stream}.0', FC, 32 * cells))
    state.update(_linear(rng, 'classifier.0', FC, 2 * FC))
    state.update(_linear(rng, 'classifier.3', 1, FC))
  else:  # pi_fc7: classifier_of is built (and saved) but never used.
    for stream in ('classifier_rgb', 'classifier_of'):
      state.update(_linear(rng, f'{stream}.0', FC, 32 * cells))
      state.update(_linear(rng, f'{stream}.3', FC, FC))
    state.update(_linear(rng, 'classifier.0', 1, 2 * FC))
  return {f'model.{key}': value.astype(np.float32)
          for key, value in state.items()}


def _conv(x, weight, bias):
  """3x3 conv, padding 1 (NCHW, float64)."""
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  windows = sliding_window_view(x, (3, 3), axis=(2, 3))
  return (np.einsum('bchwij,ocij->bohw', windows, np.float64(weight),
                    optimize=True) + np.float64(bias)[None, :, None, None])


def release_forward(state, fusion, image, flow):
  """The release's forward pass (vgg_pytorch.py, eval mode) on NCHW inputs
  already normalised as its data loader does (x - mean, std 1)."""
  state = {key.removeprefix('model.'): value for key, value in state.items()}
  relu = lambda x: np.maximum(x, 0)

  def features(x, prefix):
    for indices in CONV_INDICES:
      for index in indices:
        x = relu(_conv(x, state[f'{prefix}.{index}.weight'],
                       state[f'{prefix}.{index}.bias']))
      batch, channels, height, width = x.shape  # 2x2/2 max-pool.
      x = x.reshape(batch, channels, height // 2, 2, width // 2, 2).max(
          axis=(3, 5))
    return x

  def linear(x, name):
    return x @ np.float64(state[f'{name}.weight']).T + state[f'{name}.bias']

  def classifier(x, name, layers):
    for index, layer in enumerate(layers):
      x = linear(x, f'{name}.{layer}')
      if index < len(layers) - 1 or name != 'classifier':
        x = relu(x)
    return x

  flat = lambda x: x.reshape(x.shape[0], -1)
  if fusion in ('rgb', 'flow', 'channels', 'horizontal'):
    x = {'rgb': image, 'flow': flow,
         'channels': np.concatenate([image, flow], axis=1),
         'horizontal': np.concatenate([image, flow], axis=3)}[fusion]
    return classifier(flat(features(x, 'features')), 'classifier', (0, 3, 6))
  rgb, of = features(image, 'features_rgb'), features(flow, 'features_of')
  if fusion == 'pi_conv':
    joined = flat(np.concatenate([rgb, of], axis=1))
    return classifier(joined, 'classifier', (0, 3, 6))
  if fusion == 'pi_fc6':
    joined = np.concatenate([classifier(flat(rgb), 'classifier_rgb', (0,)),
                             classifier(flat(of), 'classifier_of', (0,))], 1)
    return classifier(joined, 'classifier', (0, 3))
  # pi_fc7: the flow stream also goes through classifier_rgb (release).
  joined = np.concatenate([classifier(flat(rgb), 'classifier_rgb', (0, 3)),
                           classifier(flat(of), 'classifier_rgb', (0, 3))], 1)
  return classifier(joined, 'classifier', (0,))


def narrow_paper_config(fusion):
  """configs/aunets.py:paper-<fusion> at width 1/16 and 64 px crops."""
  config = aunets_config.get_config(f'paper-{fusion}')
  config.model.width_multiplier = 1 / 16
  config.resize_size = 72
  config.crop_size = CROP
  return config


@pytest.mark.parametrize('fusion', ['rgb', 'channels', 'horizontal',
                                    'pi_conv', 'pi_fc6', 'pi_fc7'])
def test_converted_release_predicts_the_release_logit(fusion, tmp_path):
  state = release_state(fusion)
  source = tmp_path / f'AU{AU}.npz'
  np.savez(source, **state)
  directory = releases.convert_aunets_release(
      str(source), AU, releases.RELEASE_VARIANTS[fusion],  # e.g. 'Conv'.
      str(tmp_path / 'run'), config=narrow_paper_config(fusion), fold=2)
  run = predict_run.load_run(directory)
  assert run.aus == (AU,) and run.config.model.fusion == fusion
  assert (run.config.run_au, run.config.run_fold) == (AU, 2)
  np.testing.assert_allclose(run.thresholds, [0.5])

  rng = np.random.default_rng(1)
  image, flow = rng.uniform(0, 1, (2, 2, CROP, CROP, 3))
  std = np.asarray(run.config.pixel_std)
  batch = {'image': ((image - MEAN) / std).astype(np.float32),
           'flow': ((flow - MEAN) / std).astype(np.float32),
           'landmarks': np.full((2, 68, 2), -1, np.float32)}
  logits, _ = run.apply_fn(run.variables, batch)
  # The release's input: x - mean, std 1 (its data_loader.py).
  expected = release_forward(
      state, fusion, (image - MEAN).transpose(0, 3, 1, 2),
      (flow - MEAN).transpose(0, 3, 1, 2))
  assert logits.shape == expected.shape == (2, 1)
  scale = np.abs(expected).max()
  assert scale > 0.1
  np.testing.assert_allclose(np.asarray(logits, np.float64), expected,
                             rtol=1e-4, atol=1e-4 * scale)
  # One logit -> the 2-way output's 'present' column, 'absent' zero.
  output = run.variables['params']['output']
  np.testing.assert_array_equal(np.asarray(output['kernel'])[:, 0], 0)
  with open(os.path.join(directory, 'converted_from.json')) as f:
    provenance = json.load(f)
  assert provenance['fusion'] == fusion
  assert provenance['unused_source'] == (
      sorted(k for k in state if k.startswith('model.classifier_of.'))
      if fusion == 'pi_fc7' else [])


def test_cli_config_is_the_papers_and_errors_name_the_file(tmp_path,
                                                          capsys):
  config = releases.aunets_release_config(CONFIG_FILE, 'pi_fc6')
  assert config.to_dict() == aunets_config.get_config(
      'paper-pi_fc6').to_dict()
  source = tmp_path / 'AU12.npz'
  np.savez(source, **release_state('rgb'))
  code = releases.main(['convert-aunets', f'--input={source}', '--au=12',
                       '--variant=pi_conv', f'--output={tmp_path / "run"}',
                       f'--config={CONFIG_FILE}'])
  error = capsys.readouterr().err
  assert code == 2
  assert "AU12.npz: not an AUNets release checkpoint of variant 'pi_conv'" in (
      error) and "look like variant 'rgb or flow'" in error
  assert not os.path.exists(tmp_path / 'run' / 'config.json')
  for args, message in (
      (['--au=3'], 'one model per BP4D AU'),
      (['--variant=Vertical'], "variant 'Vertical'")):
    code = releases.main(['convert-aunets', f'--input={source}', '--au=12',
                         f'--output={tmp_path / "run"}',
                         f'--config={CONFIG_FILE}'] + args)
    assert code == 2 and message in capsys.readouterr().err


def test_release_pth_is_read_with_weights_only(tmp_path):
  torch = pytest.importorskip('torch')
  state = release_state('rgb')
  torch.save({key: torch.from_numpy(value) for key, value in state.items()},
             tmp_path / 'AU12.pth')
  arrays = weights.read_pytorch_checkpoint(str(tmp_path / 'AU12.pth'))
  assert sorted(arrays) == sorted(state)
  np.testing.assert_array_equal(arrays['model.classifier.6.weight'],
                                state['model.classifier.6.weight'])

  class Payload:
    def __reduce__(self):
      return (os.system, ('true',))
  torch.save({'x': Payload()}, tmp_path / 'evil.pth')
  with pytest.raises(ValueError, match=r'evil\.pth: torch\.load\(weights_only'):
    weights.read_pytorch_checkpoint(str(tmp_path / 'evil.pth'))
