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

Pretraining classifies identities: VGGFace2 in `paper` (data_builders/
vggface2, aligned faces); the CPU variants use the synthetic_au
`identities` config (500 people, AUs unknown; named deviation: no real
data on CPU). Loss of the AU stages: eqs. 5-6 with selective learning and
lambda = 1. Published: 61.0 mean F1 on BP4D (3-fold, table 1), 56.9 on
DISFA (fine-tuned from the best BP4D model: set --config.dataset=disfa and
an `init_from` with dataset='bp4d').

Deviation in every variant: no random rotation (section 4.1.2; angle not
stated): the input pipeline has no rotation transform yet. Mean/std of the
input normalisation are not stated: ImageNet's.

Table 3's ablation: the ABLATION rows below, one per row of the paper's
table and named by it (ResNet-18/34/50, ResNet-34+SL, ResNet-34+SL+DA,
Stem-Net, Stem-Net+L-Net, Stem-Net+P-Net_without_Lr, Stem-Net+P-Net,
LP-Net), each with the paper's mean F1 beside it:

  python -m au_jax.ablate --config=configs/lpnet.py:ablation \
      --rows=ResNet-34,ResNet-34+SL,Stem-Net,Stem-Net+L-Net,LP-Net \
      --seeds=0,1 --workdir=/tmp/lpnet_ablate

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
          results and deviations in docs/lpnet.md.
  paper   the paper's sizes on BP4D/aligned (eye-centre aligned faces),
          pretrained on VGGFace2/aligned: ResNet-34 (21.3M stem
          parameters), 224 crop from 240 (k = 49), batch 100, 30 epochs
          per stage (~28,000 steps on a BP4D fold); for GPUs. The
          synthetic data at these sizes: --config.dataset=synthetic_au
          --config.dataset_config=default (the pretraining stays on
          VGGFace2: --config.stages.pretrain.dataset=synthetic_au
          --config.stages.pretrain.dataset_config=identities and the same
          for stages.stem.init_from, with num_classes=500).
  test    tiny shapes and a handful of steps per stage for the test suite
          (ResNet-18 at width 4, 64 px crop).
"""

import ml_collections

from configs import common

# VGGFace2's class folders run n000001..n009294 (data_builders/vggface2).
VGGFACE2_CLASSES = 9295

# Table 3's rows for `python -m au_jax.ablate`, named by the paper's rows
# (BP4D mean F1 in brackets); each is a dict of config overrides, dotted keys
# reaching into stage overlays. Every row keeps the same steps per stage,
# and rows that share a prefix of stages share those runs (ablate links
# them), so "Stem-Net+L-Net" continues from the very Stem-Net run of its
# seed. Stem-Net is the paper's "Stem-Net*" = ResNet-34 + SL/DA/P. Named
# deviations: DA here is the mirror only (the random crop stays in every
# row, since crop_size sets the input scale, and au_jax has no rotation);
# Stem-Net+LF (58.8) and Stem-Net+FACS (59.0) are not rows (the model has
# no per-region AU heads); the paper does not say how its rows without
# L-Net pool the stem's features: here global average pooling (lpnet.py).
_SCRATCH = {'stage_order': ('stem',), 'stages.stem.init_from': None}
_NO_DA = dict(_SCRATCH, **{'stages.stem.flip': False})
_NO_SL = dict(_NO_DA, **{'stages.stem.selective_learning': False})
# Stem-Net* + P-Net: P-Net on the Stem-Net head (no L-Net), from Stem-Net.
_STEM_PNET = {
    'stage_order': ('pretrain', 'stem', 'pnet'),
    'stages.pnet.model': {'use_lnet': False, 'use_pnet': True},
    'stages.pnet.init_from': {'stage': 'stem', 'params': 'stem/.*'}}
ABLATION = {
    'ResNet-18': dict(_NO_SL, **{'model.depth': 18}),  # [52.9]
    'ResNet-34': dict(_NO_SL),  # [53.7] no SL, no DA, no pretraining.
    'ResNet-50': dict(_NO_SL, **{'model.depth': 50}),  # [52.5]
    # + SL: eq. 5 with Hand et al.'s balancing weights.
    'ResNet-34+SL': dict(_NO_DA),  # [55.2]
    'ResNet-34+SL+DA': dict(_SCRATCH),  # [56.5] paper: ResNet-34+SL/DA.
    # Stem-Net* (ResNet-34+SL/DA/P): + face-identity pretraining. [58.0]
    'Stem-Net': {'stage_order': ('pretrain', 'stem')},
    'Stem-Net+L-Net': {'stage_order': ('pretrain', 'stem', 'lnet')},  # [60.2]
    # P-Net without the regularisation loss L_r (lambda = 0). [58.7]
    'Stem-Net+P-Net_without_Lr': dict(
        _STEM_PNET, **{'stages.pnet.orthogonality_weight': 0.0}),
    'Stem-Net+P-Net': dict(_STEM_PNET),  # With L_r, lambda = 1.
    'LP-Net': {},  # [61.0] + L-Net + P-Net with L_r (eq. 6).
    # Not a table 3 row: Stem-Net trained as long as the rows that add a
    # stage to it (the stem stage 150 -> 300 steps), so "+ L-Net" and
    # "+ P-Net" can be told apart from "+ 150 steps".
    'Stem-Net_300steps': {'stage_order': ('pretrain', 'stem'),
                          'stages.stem.num_train_steps': 300},
    # Not table 3 rows: LP-Net with a smaller lambda, and a diagnostic with
    # P-Net's own rate x10 (1e-2). The records' landmarks carry the
    # expression (a linear model on them beats the CNN), so a P-Net that
    # adds nothing is under-trained, not useless.
    'LP-Net_lambda0.1': {'stages.pnet.orthogonality_weight': 0.1},
    'LP-Net_fast_P-Net': {'stages.pnet.lr_mults': (('(stem|lnet)/.*', 0.5),
                                                   ('pnet/.*', 10.0))},
}


def _stages(pretrain_steps: int, stage_steps: int, identity_config: str,
            num_identities: int,
            identity_dataset: str = 'synthetic_au'
            ) -> ml_collections.ConfigDict:
  """Overlays of the four stages (section 4.1.3); the stem pretrains on
  `identity_dataset`/`identity_config` (num_identities classes)."""
  no_heads = dict(use_lnet=False, use_pnet=False)
  return ml_collections.ConfigDict(dict(
      # Face-identity pretraining of the stem (VGGFace2 in the paper).
      pretrain=dict(
          method='classify', dataset=identity_dataset,
          dataset_config=identity_config, num_classes=num_identities,
          model=no_heads, learning_rate=1e-3,
          num_train_steps=pretrain_steps, tune_thresholds=False),
      # Stem-Net on AUs: Adam 1e-3.
      stem=dict(
          model=no_heads, learning_rate=1e-3, num_train_steps=stage_steps,
          init_from=ml_collections.ConfigDict(dict(
              method='classify', dataset=identity_dataset,
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
  config = common.base()
  common.omit(config, common.SPEED_FIELDS + (
      'views', 'loss_normalise', 'min_positives_for_threshold', 'best_metric',
      'median_window'))
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
  config.lr_schedule = 'constant'  # Not stated within a stage.
  # The pretraining stage classifies identities.
  config.classify_field = 'identity'
  config.num_classes = 500

  config.batch_size = 100
  config.eval_batch_size = 100
  config.num_train_steps = 28000  # ~30 epochs of a BP4D training fold.
  config.tune_thresholds = False  # The paper reports untuned thresholds.

  config.stage_order = ('pretrain', 'stem', 'lnet', 'pnet')
  config.stages = _stages(28000, 28000, 'identities', 500)

  if arg in (None, '', 'cpu'):
    config.model.width = 16
    config.model.lstm_features = 64
    config.resize_size = 108
    config.crop_size = 96
    config.batch_size = 32
    config.eval_batch_size = 64
    common.cpu_run(config, steps=300, log_every=10)
    config.stages = _stages(300, 300, 'identities', 500)
  elif arg == 'ablation':
    # The CPU job cut to fit 4 rows x 2 seeds in ~50 min on the shared
    # 2-core CPU (docs/lpnet.md): 100 pretraining steps, 150 per
    # AU stage; validation every 75 steps.
    config.model.width = 16
    config.model.lstm_features = 64
    config.resize_size = 108
    config.crop_size = 96
    config.batch_size = 32
    config.eval_batch_size = 64
    common.cpu_run(config, steps=150, log_every=15)
    config.checkpoint_every_steps = 75
    config.progress_bar = False
    config.stages = _stages(100, 150, 'identities', 500)
  elif arg == 'paper':
    # BP4D, eye-centre aligned, and VGGFace2 for the identity pretraining
    # (section 4.1.3), aligned alike (both need the manual downloads:
    # data_builders/bp4d/README.md, data_builders/vggface2/README.md).
    # Named deviation: the vggface2 builder reads both partitions (9,131
    # people) where the paper's pretraining set is not stated beyond
    # "VGGFace2"; a class is the builder's identity number (n009294 ->
    # 9294), so 9,295 outputs, 164 of them never seen.
    config.dataset = 'bp4d'
    config.dataset_config = 'aligned'
    config.num_classes = VGGFACE2_CLASSES
    config.stages = _stages(28000, 28000, 'aligned', VGGFACE2_CLASSES,
                            identity_dataset='vggface2')
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
