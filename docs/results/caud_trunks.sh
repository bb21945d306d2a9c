#!/bin/bash
# CAUD: frozen EmoNet trunk vs frozen random trunk vs every layer from
# scratch (docs/caud.md), 300 AU steps per row, seeds 0 and 1. EmoNet is
# trained once (configs/emonet.py, fold 1 of synthetic_au/default) and
# linked into each row's workdir. Then:
# python docs/tables.py collect caud_trunks $W
set -euo pipefail
W=${1:-${AU_RESULTS:-/tmp/au_results}/caud_trunks}
E=$W/emonet
[ -f "$E/synthetic_au-default/classify_emotion/results.json" ] || \
  python -m au_jax.main --config=configs/emonet.py --workdir="$E"
for r in emonet_frozen random_frozen scratch; do for s in 0 1; do
  d=$W/$r/seed_$s/synthetic_au-default
  mkdir -p "$d"
  [ -e "$d/classify_emotion" ] || ln -s "$E/synthetic_au-default/classify_emotion" "$d/"
done; done
python -m au_jax.ablate --config=configs/caud.py \
  --rows=emonet_frozen,random_frozen,scratch --seeds=0,1 --workdir="$W" \
  --config.num_train_steps=300 --config.eval_every_steps=150 \
  --config.checkpoint_every_steps=150
