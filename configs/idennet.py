r"""IdenNet: identity-aware AU detection with a face-clustering loss.

Paper: ../shared/papers/idennet_poster.txt (Tu, Yang & Hsu); layers, losses
and solver of the authors' code in ../shared/reference/architectures.md
(IdenNet section). Model: au_jax/models/idennet.py (LightCNN-4 trunk,
au_jax/models/lightcnn.py); losses and the mixed AU + identity-pair batches:
au_jax/methods/idennet.py, au_jax/methods/idennet.py. Run:

  python -m au_jax.main --config=configs/idennet.py          # CPU job
  python -m au_jax.main --config=configs/idennet.py:paper    # paper's sizes
  python -m au_jax.main --config=configs/idennet.py:test     # seconds, tests

Ablations (same budget): --config.model.identity_branch=False (plain
LightCNN AU detector, no triplet loss) and
--config.model.subtract_identity=False (triplet loss, no FC6 - FC5).

Cross-dataset (the poster's headline: train on BP4D, test on UNBC-McMaster
over AUs 4 6 7 10 12): train on every subject of config.dataset, test on
every subject of config.test_dataset over the AUs both label
(fold_evaluation.py; results under <method dir>/test_<dataset>-<config>/):

  python -m au_jax.main --config=configs/idennet.py:cross   # default->shifted
  python -m au_jax.main --config=configs/idennet.py:paper --config.folds=all \
      --config.test_dataset=unbc_mcmaster --config.test_dataset_config=crop

Every batch holds config.batch_size rows, `identity_share` of them faces of
the identity dataset in same-identity pairs (AUs unknown), the rest AU
frames, on every device. Identity data: the synthetic_au `identities`
config (500 people, 4 faces each) in the CPU variants; CelebA in `paper`
(10,177 people; the poster also lists VGGFace2 and LFW: --config.
identity_dataset=vggface2 or lfw, data_builders/<name>, built from the
user's download).

The poster's picture (features the AU classifier sees, by subject and by
one AU, with and without the identity branch):

  python -m au_jax.methods.idennet tsne tsne.png \
      "IdenNet=<workdir>/synthetic_au-default/idennet/fold_1" \
      "LightCNN=<other workdir>/synthetic_au-default/idennet/fold_1" --au=12

Ablation (README "IdenNet results"; rows ABLATION below):

  python -m au_jax.ablate --config=configs/idennet.py \
      --rows=within,within_no_identity,cross,cross_no_identity --seeds=0,1 \
      --workdir=/tmp/idennet_ablate --config.data_dir=<tfds dir>

  Measured (2 seeds, mean F1 ± half-range): within 50.5 ± 0.4 vs 52.7 ±
  2.2 without the identity branch; cross 51.0 ± 1.6 vs 51.7 ± 2.8 (AUC 77.7
  ± 0.3 vs 76.8 ± 0.1): no F1 difference beyond the seed spread (README).

Parameters (jax.eval_shape, tested in tests/test_idennet.py), 12 AUs, RGB:
  paper  128x128, ceil pooling (5x5x192 into fc5/fc6)   6,574,796
         (grayscale input, as the reference's "about 6.56M": 6,559,244)
  CPU    64x64 (1x1x192 into fc5/fc6)                  1,856,204
  test   64x64, fc width 32                            1,668,044

Published (poster, F1-frame): IdenNet beats LightCNN alone within BP4D and
DISFA and when trained on BP4D and tested on UNBC-McMaster; the poster's
tables did not survive text extraction, so no number is quoted here.

Variants (`get_config(arg)`):
  (none)  CPU job: synthetic_au/default fold 1 + synthetic_au/identities,
          64x64 crop from 72 (named deviation: the authors' input size is a
          command-line argument; 64 keeps a 2-core step under a second), batch
          32 (16 AU frames + 8 pairs), 300 steps, Adam 3e-4 (DRML's CPU
          pilot rate; not piloted for IdenNet), per-AU thresholds tuned on
          validation.
  cross   the CPU job on the cross-dataset protocol: every synthetic_au/
          default subject trains (2 validate), all of synthetic_au/shifted
          tests (the poster trains on BP4D and tests on UNBC-McMaster).
  paper   the authors' solver: Adam 1e-4 (beta1 0.9), L2 weight decay 5e-4,
          x0.1 every 10,000 steps, loss weights 1 and 1, margin 0.5, 4
          negatives; 128x128 input, pixels / 255 and no mean (authors' code);
          BP4D crop faces (manual download) with CelebA (data_builders/
          celeba, crop config, built from the user's download) as the
          identity data; half of each batch AU frames in same-subject pairs
          (au_subject_pairs), half CelebA same-identity pairs. Batch 64 and
          30,000 steps are our choice (the reference gives neither; the
          authors stop early on validation F1 within 100 epochs). CPU
          stand-in for the identity data: --config.identity_dataset=
          synthetic_au --config.identity_dataset_config=identities. What it
          would reproduce: the poster's BP4D within-dataset and BP4D ->
          UNBC-McMaster comparisons of IdenNet with LightCNN (--config.
          model.identity_branch=False); not run here (no BP4D, CelebA or
          UNBC-McMaster data, no GPU), and the poster's tables did not
          survive text extraction, so there is no number to match.
  test    tiny shapes, 2 steps; synthetic_au/tiny stands in for both streams.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base()
  common.omit(config, common.SPEED_FIELDS + (
      'views', 'min_positives_for_threshold', 'best_metric', 'median_window'))
  config.method = 'idennet'  # au_jax/methods/idennet.py
  config.model_name = 'idennet'  # au_jax/models/idennet.py
  config.model = ml_collections.ConfigDict(dict(
      identity_branch=True,
      subtract_identity=True,
      hidden_size=512,  # fc5/fc6 before MFM (reference).
      ceil_pool=True,  # Caffe's rounding (reference).
      grayscale=False,  # Authors' option; our data are RGB.
  ))

  # Cross-dataset protocol (folds='all': train on every subject of
  # `dataset`, test on every subject of this one over the shared AUs),
  # e.g. 'synthetic_au' / 'shifted'; None = within-dataset folds.
  config.test_dataset = ml_collections.FieldReference(None, field_type=str)
  config.test_dataset_config = ml_collections.FieldReference(
      None, field_type=str)

  # Identity stream (au_jax/methods/idennet.py).
  config.identity_dataset = 'synthetic_au'
  config.identity_dataset_config = 'identities'
  config.identity_share = 0.5  # Authors' code: half the batch.
  # AU frames in same-subject pairs whose identity (the subject) joins the
  # triplet term (methods/idennet.py: au_subject_pairs); the authors' code
  # fills half of each batch with AU-labelled pairs.
  config.au_subject_pairs = False

  # Losses (au_jax/methods/idennet.py).
  config.au_loss_weight = 1.0
  config.triplet_weight = 1.0
  config.triplet_margin = 0.5
  config.num_negatives = 4  # Half hardest, half random.

  # Input: the authors resize and divide by 255 (no mean, no crop stated).
  config.resize_size = 128
  config.crop_size = 128
  config.flip = False
  config.pixel_mean = (0.0, 0.0, 0.0)
  config.pixel_std = (1.0, 1.0, 1.0)

  config.optimizer = 'adam'
  config.learning_rate = 1e-4
  config.weight_decay = 5e-4  # L2 added to the gradient (Caffe / PyTorch).
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.lr_schedule = 'step'
  config.lr_decay_steps = 10000
  config.lr_decay_factor = 0.1
  config.classify_field = 'identity'
  config.loss_normalise = 'batch'

  config.batch_size = 64
  config.num_train_steps = 30000

  if arg in (None, '', 'cpu', 'cross'):
    config.resize_size = 72
    config.crop_size = 64
    config.flip = True
    config.learning_rate = 3e-4
    config.lr_schedule = 'constant'
    config.batch_size = 32
    common.cpu_run(config, steps=300, log_every=10)
    if arg == 'cross':
      # Train on all 24 default people (2 validate), test on the 12
      # `shifted` people (other identities, darker skin, dimmer coloured
      # light, more head turn); synthetic data share every AU.
      config.folds = 'all'
      config.test_dataset = 'synthetic_au'
      config.test_dataset_config = 'shifted'
  elif arg == 'paper':
    config.dataset = 'bp4d'
    config.dataset_config = 'crop'  # Face boxes, resized (authors' code).
    config.identity_dataset = 'celeba'  # The poster's identity data.
    config.identity_dataset_config = 'crop'
    config.au_subject_pairs = True
  elif arg == 'test':
    config.dataset_config = 'tiny'
    # tiny's 6 people (16 faces each) stand in for the identity data.
    config.identity_dataset_config = 'tiny'
    config.model.hidden_size = 32
    config.resize_size = 72
    config.crop_size = 64
    config.flip = True
    config.folds = '1'
    common.tiny_run(config)
    config.num_validation_subjects = 1
  else:
    raise ValueError(f"configs/idennet.py: unknown variant {arg!r}; use '', "
                     "'cpu', 'cross', 'paper' or 'test'.")
  return config


# au_jax/ablate.py rows (same budget: the CPU job's 300 steps each).
# Within = synthetic_au/default fold 1; cross = all default subjects ->
# synthetic_au/shifted. Without the identity branch the model is a plain
# LightCNN AU detector (no fc5, no triplet loss, no identity rows' loss).
_CROSS = {'folds': 'all', 'test_dataset': 'synthetic_au',
          'test_dataset_config': 'shifted'}
ABLATION = {
    'within': {},
    'within_no_identity': {'model.identity_branch': False},
    # The paper's batches: AU frames also in same-subject pairs, so the AU
    # subjects join the triplet term (the CPU job pairs identities only).
    'within_subject_pairs': {'au_subject_pairs': True},
    'cross': dict(_CROSS),
    'cross_no_identity': dict(_CROSS, **{'model.identity_branch': False}),
}
