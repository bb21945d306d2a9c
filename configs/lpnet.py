r"""LP-Net: local relationship learning with person-specific shape
regularisation (Niu, Han, Yang, Huang & Shan, CVPR 2019).

Paper: ../shared/papers/lpnet_cvpr2019.txt (model: au_jax/models/lpnet.py,
loss: au_jax/methods/lpnet.py). Run:

  python -m au_jax.main --config=configs/lpnet.py          # CPU job
  python -m au_jax.main --config=configs/lpnet.py:paper    # the paper's sizes
  python -m au_jax.main --config=configs/lpnet.py:test     # seconds, tests

Stages (section 4.1.3), one run each in `config.stage_order`, each starting
from the previous stage's weights (`init_from`; the previous run must exist):

  | stage    | method   | model                 | learning rates (Adam)       |
  |----------|----------|-----------------------|-----------------------------|
  | pretrain | classify | stem, pool, 'output'; | 1e-3 (paper: not stated)    |
  |          |          | face identities       |                             |
  | stem     | lpnet    | stem, pool, 'output'  | 1e-3                        |
  | lnet     | lpnet    | stem + L-Net          | stem 5e-4, L-Net 1e-3       |
  | pnet     | lpnet    | stem + L-Net + P-Net  | stem, L-Net 5e-4; P-Net 1e-3|

Pretraining classifies identities: VGGFace2 in the paper; here always the
synthetic_au `identities` config (500 people, AUs unknown; named deviation:
au_jax has no VGGFace2 builder). Loss of the AU stages: eqs. 5-6 with
selective learning and lambda = 1. Published: 61.0 mean F1 on BP4D (3-fold,
table 1), 56.9 on DISFA (fine-tuned from the best BP4D model: set
--config.dataset=disfa and an `init_from` with dataset='bp4d').

Deviation in every variant: no random rotation (section 4.1.2; angle not
stated): the input pipeline has no rotation transform yet. Mean/std of the
input normalisation are not stated: ImageNet's.

Table 3 ablation rows from this config: Stem-Net = stage_order up to 'stem'
(with selective_learning=False for the row without SL), + L-Net = up to
'lnet', LP-Net = all four stages.

Variants (`get_config(arg)`):
  (none)  CPU job on synthetic_au/default, fold 1. Named deviations: crop
          96 from resize 108 (k = 3x3 = 9 local features instead of 49);
          ResNet-34 at width 16 (channels 16-128, f_au and f_s 128-d); LSTM
          hidden 64; batch 32 and 300 steps per stage; per-AU
          thresholds tuned on validation. Needs synthetic_au `default` and
          `identities` built in one data_dir. A 20-steps-per-stage smoke
          run of all four stages took 7 minutes on the shared 2-core CPU
          (~80 img/s once compiled), so the full job is ~20-25 minutes.
  ablation  the CPU job cut for table 3's ablation (100 pretraining steps,
          150 per AU stage, validation every 75): `python -m au_jax.ablate
          --config=configs/lpnet.py:ablation` with the ABLATION rows below;
          results and deviations in docs/lpnet_ablation.md.
  paper   the paper's sizes on BP4D/aligned (eye-centre aligned faces):
          ResNet-34 (21.3M stem parameters), 224 crop from 240 (k = 49),
          batch 100, 30 epochs per stage (~28,000 steps on a BP4D fold);
          for GPUs. The synthetic data at these sizes:
          --config.dataset=synthetic_au --config.dataset_config=default.
  test    tiny shapes and a handful of steps per stage for the test suite
          (ResNet-18 at width 4, 64 px crop).
"""

import ml_collections

from au_jax import aus
from configs import common

# Table 3 rows for `python -m au_jax.ablate` (docs/lpnet_ablation.md). Each
# row is a dict of config overrides; dotted keys reach into stage overlays.
# Every row keeps the same pretraining stage and steps per stage, and rows
# that share a prefix of stages share those runs (ablate links them), so
# "+ L-Net" continues from the very Stem-Net + SL run of its seed.
ABLATION = {
    # Stem-Net without selective learning: plain masked cross-entropy.
    'stem': {'stage_order': ('pretrain', 'stem'),
             'stages.stem.selective_learning': False},
    # Stem-Net + SL (eq. 5 with Hand et al.'s balancing weights).
    'stem_sl': {'stage_order': ('pretrain', 'stem')},
    # Stem-Net + L-Net (eq. 1).
    'lnet': {'stage_order': ('pretrain', 'stem', 'lnet')},
    # Full LP-Net: + P-Net with L_r, lambda = 1 (eq. 6).
    'pnet': {},
    # Extra rows: P-Net without L_r (lambda = 0; table 3's "without the
    # regularisation loss") and with a smaller lambda.
    'pnet_lambda0': {'stages.pnet.orthogonality_weight': 0.0},
    'pnet_lambda0.1': {'stages.pnet.orthogonality_weight': 0.1},
    # Diagnostic row: P-Net's own rate x10 (1e-2), the rest as 'pnet'. The
    # records' landmarks carry the expression (a linear model on them beats
    # the CNN), so a P-Net that adds nothing is under-trained, not useless.
    'pnet_fast': {'stages.pnet.lr_mults': (('(stem|lnet)/.*', 0.5),
                                           ('pnet/.*', 10.0))},
}


def _stages(pretrain_steps: int, stage_steps: int, identity_config: str,
            num_identities: int) -> ml_collections.ConfigDict:
  """Overlays of the four stages (section 4.1.3)."""
  no_heads = dict(use_lnet=False, use_pnet=False)
  return ml_collections.ConfigDict(dict(
      # Face-identity pretraining of the stem (VGGFace2 in the paper).
      pretrain=dict(
          method='classify', dataset='synthetic_au',
          dataset_config=identity_config, num_classes=num_identities,
          model=no_heads, learning_rate=1e-3,
          num_train_steps=pretrain_steps, tune_thresholds=False),
      # Stem-Net on AUs: Adam 1e-3.
      stem=dict(
          model=no_heads, learning_rate=1e-3, num_train_steps=stage_steps,
          init_from=ml_collections.ConfigDict(dict(
              method='classify', dataset='synthetic_au',
              dataset_config=identity_config, stage='pretrain',
              params='stem/.*'))),
      # + L-Net: stem 5e-4 (0.5 x the base rate), L-Net 1e-3.
      lnet=dict(
          model=dict(use_lnet=True, use_pnet=False), learning_rate=1e-3,
          lr_mults=(('stem/.*', 0.5),), num_train_steps=stage_steps,
          init_from=ml_collections.ConfigDict(dict(
              stage='stem', params='stem/.*'))),
      # + P-Net: stem and L-Net 5e-4, P-Net 1e-3.
      pnet=dict(
          model=dict(use_lnet=True, use_pnet=True), learning_rate=1e-3,
          lr_mults=(('(stem|lnet)/.*', 0.5),), num_train_steps=stage_steps,
          init_from=ml_collections.ConfigDict(dict(
              stage='lnet', params='(stem|lnet)/.*'))),
  ))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = 'lpnet'  # au_jax/methods/lpnet.py
  config.model_name = 'lpnet'  # au_jax/models/lpnet.py
  config.model = ml_collections.ConfigDict(dict(
      depth=34,  # Table 3: 34 beats 18 and 50.
      width=64,  # Standard ResNet.
      use_lnet=True,
      use_pnet=True,
      lstm_features=128,  # Not stated in the paper.
      pnet_hidden=256,  # Figure 4: 136 -> 256 -> 512 -> C.
  ))

  config.dataset = 'synthetic_au'
  config.dataset_config = 'default'
  config.data_dir = ml_collections.FieldReference(None, field_type=str)
  config.manual_dir = ml_collections.FieldReference(None, field_type=str)
  config.aus = aus.BP4D_AUS
  config.folds = '1,2,3'
  config.num_validation_subjects = 2
  config.strict_folds = True
  config.max_validation_frames = 600

  # Input (section 4.1.2): aligned faces resized to 240, random 224 crop and
  # horizontal flip for training, centre crop at test.
  config.resize_size = 240
  config.crop_size = 224
  config.flip = True
  config.pixel_mean = (0.485, 0.456, 0.406)  # Not stated: ImageNet's.
  config.pixel_std = (0.229, 0.224, 0.225)

  # Loss (eqs. 5-6).
  config.selective_learning = True
  config.selective_learning_target = 0.5  # Balanced (Hand et al.'s default).
  config.orthogonality_weight = 1.0  # lambda

  # Optimiser (section 4.1.3): Adam, per-stage rates in `stages`.
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.momentum = 0.9
  config.weight_decay = 0.0
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.lr_schedule = 'constant'  # Not stated within a stage.
  config.lr_decay_steps = 0
  config.lr_decay_factor = 0.1
  config.frozen = ''
  config.lr_mults = ()
  config.init_from = None
  config.one_model_per = ()
  config.classify_field = 'identity'
  config.num_classes = 500

  config.batch_size = 100
  config.eval_batch_size = 100
  config.num_train_steps = 28000  # ~30 epochs of a BP4D training fold.
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  config.num_workers = 2
  config.seed = 0
  config.threshold = 0.5
  config.tune_thresholds = False  # The paper reports untuned thresholds.
  config.progress_bar = True

  config.stage_order = ('pretrain', 'stem', 'lnet', 'pnet')
  config.stages = _stages(28000, 28000, 'identities', 500)

  if arg in (None, '', 'cpu'):
    config.model.width = 16
    config.model.lstm_features = 64
    config.resize_size = 108
    config.crop_size = 96
    config.folds = '1'
    config.tune_thresholds = True
    config.batch_size = 32
    config.eval_batch_size = 64
    config.num_train_steps = 300
    config.log_every_steps = 10
    config.eval_every_steps = 150
    config.checkpoint_every_steps = 100
    config.max_validation_frames = 300
    config.stages = _stages(300, 300, 'identities', 500)
  elif arg == 'ablation':
    # The CPU job cut to fit 4 rows x 2 seeds in ~50 min on the shared
    # 2-core CPU (docs/lpnet_ablation.md): 100 pretraining steps, 150 per
    # AU stage; validation every 75 steps.
    config.model.width = 16
    config.model.lstm_features = 64
    config.resize_size = 108
    config.crop_size = 96
    config.folds = '1'
    config.tune_thresholds = True
    config.batch_size = 32
    config.eval_batch_size = 64
    config.num_train_steps = 150
    config.log_every_steps = 15
    config.eval_every_steps = 75
    config.checkpoint_every_steps = 75
    config.max_validation_frames = 300
    config.progress_bar = False
    config.stages = _stages(100, 150, 'identities', 500)
  elif arg == 'paper':
    # BP4D, eye-centre aligned (needs the manual download; see
    # data_builders/bp4d/README.md). Identity pretraining stays on
    # synthetic_au/identities: au_jax has no VGGFace2 builder.
    config.dataset = 'bp4d'
    config.dataset_config = 'aligned'
    config.stages = _stages(28000, 28000, 'identities', 500)
  elif arg == 'test':
    config.dataset_config = 'tiny'
    config.model.depth = 18
    config.model.width = 4
    config.model.lstm_features = 8
    config.model.pnet_hidden = 16
    config.resize_size = 72
    config.crop_size = 64  # k = 2x2 local features.
    config.folds = '1'
    common.tiny_run(config)
    config.num_validation_subjects = 1
    config.num_classes = 6
    # tiny's 6 people stand in for the identity data set.
    config.stages = _stages(2, 2, 'tiny', 6)
  else:
    raise ValueError(f"configs/lpnet.py: unknown variant {arg!r}; use '', "
                     "'cpu', 'ablation', 'paper' or 'test'.")
  return config
