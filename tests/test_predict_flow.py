"""au_jax.predict on a run trained with optical flow (AUNets Channels):
each face gets the flow to its next frame, paired as the input pipeline
pairs records, so predictions equal the evaluation pipeline's."""

import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from au_jax import checkpointing
from au_jax.data import device_transforms
from au_jax.data import folds
from au_jax.data import input_pipeline
from au_jax import models
from au_jax import predict
from au_jax.predict import io as predict_io
from au_jax import train
from au_jax.data import transforms
from au_jax.predict import run as predict_run
from configs import aunets as aunets_config

BATCH = 8


@pytest.fixture(scope='module')
def flow_run(tiny_data_dir, tmp_path_factory):
  """An AUNets Channels run (RGB + optical flow, configs/aunets.py:
  test-channels, AU 12) at its initial weights, as the trainer leaves it."""
  config = aunets_config.get_config('test-channels')
  config.data_dir = tiny_data_dir
  config.aus = (12,)
  config.init_from = None
  directory = os.path.join(str(tmp_path_factory.mktemp('flow')), 'run')
  os.makedirs(directory)
  checkpointing.write_config(config, directory)
  state = train.create_train_state(config, models.create(config),
                                   jax.random.key(3))
  # Initial logits are ~1e-4; a large output layer spreads the
  # probabilities over (0, 1) so a wrong flow image would show.
  params = dict(state.params, output=jax.tree.map(
      lambda x: x * 3e4, dict(state.params['output'])))
  checkpointing.save_weights_only(
      directory, {'params': params, 'batch_stats': state.batch_stats},
      1, {}, 1)
  return predict_run.load_run(directory)


def test_flow_run_predictions_equal_evaluation_pipeline(flow_run, tmp_path):
  """A flow run gets each frame's flow to its next frame (the last frame:
  the flow into it) exactly as the input pipeline pairs records."""
  config = flow_run.config
  builder = input_pipeline.open_dataset(config)
  data = input_pipeline.fold_data(config, builder, 1)
  batch = next(iter(input_pipeline.eval_batches(config, data, 'test', None)))
  video = transforms.decode_text_ids(batch['sequence_code'])
  assert set(video) == {video[0]} and list(batch['frame_index']) == list(
      range(8))  # One whole video, in frame order.
  model_batch = device_transforms.eval_preprocess(
      {k: batch[k] for k in ('image', 'landmarks', 'flow')}, config)
  logits, _ = flow_run.model.apply(flow_run.variables, model_batch,
                                   train=False)
  expected = np.asarray(jax.nn.sigmoid(logits))
  assert expected.std() > 0.01  # Probabilities that can tell flows apart.
  records = builder.as_data_source(
      split=folds.split_spec(data.subjects.test))
  folder = tmp_path / 'frames'
  folder.mkdir()
  for i in range(8):
    assert records[i]['frame_index'] == i
    cv2.imwrite(str(folder / f'{i:04d}.png'), records[i]['image'][..., ::-1])
  result = predict.predict_file(
      str(folder), flow_run, str(tmp_path / 'out'),
      predict.Options(faces='full_frame', batch_size=BATCH, smooth=1))
  header, rows = predict_io.read_csv(result.csv)
  column = header.index('AU12_p')
  got = np.array([[float(row[column])] for row in rows])
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  assert result.seconds['flow'] > 0
  # Without the flow the prediction differs: the flow input is used.
  still = dict(model_batch, flow=jnp.zeros_like(model_batch['flow']))
  moved, _ = flow_run.model.apply(flow_run.variables, still, train=False)
  assert np.abs(np.asarray(jax.nn.sigmoid(moved)) - expected).max() > 1e-2
