#!/bin/bash
# LP-Net, paper table 3 on synthetic_au (docs/lpnet.md): 8 rows x 2 seeds
# and a budget control (Stem-Net for 300 stem steps),
# configs/lpnet.py:ablation (100 identity-pretraining steps, 150 per AU
# stage). Then: python docs/tables.py collect lpnet_table3 $W
set -euo pipefail
W=${1:-${AU_RESULTS:-/tmp/au_results}/lpnet_table3}
python -m au_jax.ablate --config=configs/lpnet.py:ablation \
  --rows=ResNet-34,ResNet-34+SL,ResNet-34+SL+DA,Stem-Net,Stem-Net+L-Net,Stem-Net+P-Net_without_Lr,Stem-Net+P-Net,LP-Net,Stem-Net_300steps \
  --seeds=0,1 --workdir="$W"
