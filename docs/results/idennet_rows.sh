#!/bin/bash
# IdenNet vs LightCNN within synthetic_au/default fold 1 (docs/idennet.md):
# configs/idennet.py (CPU job, 300 steps), seeds 0 and 1; the third row pairs
# the AU frames by subject for the triplet term, as the paper's batches do.
# The cross-dataset rows (cross, cross_no_identity) train on every subject
# and take ~2x longer: add them to --rows to run them. Then:
# python docs/tables.py collect idennet_rows $W
set -euo pipefail
W=${1:-${AU_RESULTS:-/tmp/au_results}/idennet_rows}
python -m au_jax.ablate --config=configs/idennet.py \
  --rows=within,within_no_identity,within_subject_pairs --seeds=0,1 \
  --workdir="$W" --config.num_workers=0
