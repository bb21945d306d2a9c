#!/bin/bash
# AUNets fusion ablation on AU 12 (docs/aunets.md): configs/aunets.py:ablation
# (VGG-16 at width 1/8, 64 px, Adam 3e-4, 500 steps, fold 1 of
# synthetic_au/default), seeds 0 and 1. The pi rows start from the `rgb`
# row's run of the same seed and train 500 more steps; `rgb_1000steps` is
# RGB alone for the same 1,000 steps. Then:
# python docs/tables.py collect aunets_fusion $W
set -euo pipefail
W=${1:-${AU_RESULTS:-/tmp/au_results}/aunets_fusion}
python -m au_jax.ablate --config=configs/aunets.py:ablation \
  --rows=rgb,flow,channels,horizontal,rgb_1000steps,pi_conv,pi_fc6,pi_fc7 \
  --seeds=0,1 --workdir="$W"
