# %% [markdown]
# # au_jax quickstart: from a config to a table of predictions
#
# DRML on the tiny synthetic dataset: a config, the data, a model and its
# variables, logits on a batch, a short training run, the finished run
# loaded back, and per-frame AU predictions as a pandas DataFrame. About a
# minute on a laptop CPU.
#
# Run it as a plain script (`python docs/quickstart.py`; no
# `if __name__ == "__main__":` guard needed, dataset builds and loaders
# with worker processes included) or open it as a notebook: editors that
# know `# %%` cells (VS Code, PyCharm, Spyder) run it cell by cell, and
# `jupytext --to notebook docs/quickstart.py` makes an .ipynb.
#
# The dataset goes to $AU_JAX_DATA_DIR (default ~/tensorflow_datasets),
# the run to a new temporary folder.

# %%
import functools
import os
import tempfile

import cv2
import jax
import numpy as np

import au_jax
from au_jax import models
from au_jax import predict
from au_jax import prepare
from au_jax import runs
from au_jax import train
from au_jax.data import input_pipeline
from au_jax.predict import run as predict_run

# %% [markdown]
# ## A config
#
# `au_jax.get_config('drml:test')` is `get_config('test')` of
# `configs/drml.py`, the config that
# `python -m au_jax.main --config=configs/drml.py:test` trains: DRML at
# tiny shapes (72 px faces cropped to 66), synthetic_au's `tiny` build,
# 4 training steps. It is an ml_collections ConfigDict: change any field.

# %%
config = au_jax.get_config('drml:test')
config.folds = '1'  # Train and test fold 1 only.
print(config.method, config.model_name, config.dataset, config.dataset_config)
print('AUs (output order):', list(config.aus))

# %% [markdown]
# ## The data
#
# `prepare.prepare` builds the dataset once (later calls find it built);
# synthetic_au renders its faces in worker processes. `fold_data` picks
# the fold's train / validation / test subjects.

# %%
builder = prepare.prepare(config.dataset, config.dataset_config,
                          config.data_dir)
data = input_pipeline.fold_data(config, builder, fold=1)
print('test subjects:', data.subjects.test,
      'frames:', input_pipeline.num_frames(data, 'test'))

# %% [markdown]
# ## A model and its variables
#
# `models.create(config)` returns the linen Module of `config.model_name`;
# `train.create_train_state` initialises its parameters and batch-norm
# statistics (and the optimiser the trainer would use).

# %%
model = models.create(config)
state = train.create_train_state(config, model, jax.random.key(0))
variables = {'params': state.params, 'batch_stats': state.batch_stats}
print(f'{sum(x.size for x in jax.tree.leaves(state.params)):,} parameters')

# %% [markdown]
# ## Logits from a batch
#
# `input_pipeline.model_batches` yields every frame of a split once, in
# batches as the model takes them: faces centre-cropped and normalised,
# labels in `au_occurrence` (1, 0, -1 unknown), `mask` False on the
# padding of the last batch. The model returns `(logits [B, C], aux)`.

# %%
apply = jax.jit(functools.partial(model.apply, train=False))
probabilities, labels = [], []
for batch in input_pipeline.model_batches(config, data, 'test'):
  logits, aux = apply(variables, batch)
  keep = np.asarray(batch['mask'])
  probabilities.append(np.asarray(jax.nn.sigmoid(logits))[keep])
  labels.append(np.asarray(batch['au_occurrence'])[keep])
print('image', batch['image'].shape, batch['image'].dtype,
      '-> logits', logits.shape)
probabilities, labels = np.concatenate(probabilities), np.concatenate(labels)
print('untrained model, test frames:', probabilities.shape)

# %% [markdown]
# ## A short training run
#
# `train.train_and_evaluate(config, workdir)` trains every fold of
# `config.folds`, keeps the latest and best checkpoints, tunes per-AU
# thresholds on validation, tests, prints the per-AU table and returns it.
# Four steps teach the model nothing; the point is the path.

# %%
workdir = tempfile.mkdtemp(prefix='au_jax_quickstart_')
table = train.train_and_evaluate(config, workdir)
print('mean F1 over AUs:', round(table['mean']['f1'], 1))

# %% [markdown]
# ## The finished run
#
# A run lives in `runs.run_dir(config, workdir, fold)`, here
# `<workdir>/synthetic_au-tiny/drml/fold_1`. `load_run` restores its
# config, weights and per-AU decision thresholds.

# %%
run_dir = runs.run_dir(config, workdir, 1)
run = predict_run.load_run(run_dir)
print('step', run.step, 'thresholds', np.round(run.thresholds, 2))

# %% [markdown]
# ## Predictions
#
# `predict.predict` takes paths (videos, images, folders of images) or
# frames as arrays ([H, W, 3] uint8 RGB) and returns one row per face per
# frame: OpenFace 2 columns, `AU01_c` presence and `AU01_p` probability.
# synthetic_au frames are face crops already, so `faces='full_frame'`
# skips face detection.

# %%
face = np.asarray(builder.as_data_source(data.subjects.test[0])[0]['image'])
image_path = os.path.join(workdir, 'face.png')
cv2.imwrite(image_path, face[..., ::-1])  # OpenCV writes BGR.
from_path = predict.predict(image_path, run_dir, faces='full_frame')
from_array = predict.predict(face, run_dir, faces='full_frame')
au_columns = [c for c in from_path.columns if c.endswith('_p')]
print(from_path[['frame', 'status'] + au_columns[:4]])
print('same from the array:', np.allclose(from_path[au_columns],
                                          from_array[au_columns]))
