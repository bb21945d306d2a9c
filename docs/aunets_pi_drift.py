r"""How far the pi-fusion rows of the AUNets ablation moved from their start.

Each pi row starts from the RGB row's trained network (same seed): the
motion encoder is a copy of the RGB encoder. Prints, per seed and pi row,
the best step, the motion encoder's relative L2 distance from the RGB
encoder it was copied from, and the correlation and mean absolute
difference of the test probabilities with the RGB net's (README, AUNets).

  PYTHONPATH=. python docs/aunets_pi_drift.py --workdir=/tmp/aun/abl_pi \
      [--out=drift.json]

With --out the same figures go to a JSON file ({seed: {row: {...}}}), which
`python docs/tables.py collect aunets_fusion ... --attach=pi_drift=FILE`
keeps beside the ablation's results.
"""

import argparse
import json
import os

import jax
import numpy as np

from au_jax import checkpointing
from au_jax import tables

RUN = os.path.join('synthetic_au-default', 'aunets', 'fold_1', 'au_12')


def _flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--workdir', required=True,
                      help='the --workdir of the pi ablation')
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--out', default=None, help='also write a JSON file')
  args = parser.parse_args()
  out = {}
  for seed in args.seeds.split(','):
    rgb_dir = os.path.join(args.workdir, 'rgb', f'seed_{seed}', RUN)
    rgb, _ = checkpointing.restore_raw(rgb_dir)
    rgb_p = checkpointing.read_test_results(rgb_dir)['probabilities'][:, 0]
    start = _flat(rgb['params']['encoder'])
    for row in ('pi_conv', 'pi_fc6', 'pi_fc7'):
      directory = os.path.join(args.workdir, row, f'seed_{seed}', RUN)
      pi, step = checkpointing.restore_raw(directory)
      p = checkpointing.read_test_results(directory)['probabilities'][:, 0]
      moved = np.linalg.norm(_flat(pi['params']['motion_encoder']) - start)
      out.setdefault(seed, {})[row] = {
          'best_step': int(step),
          'motion_encoder_relative_distance': float(
              moved / np.linalg.norm(start)),
          'probability_correlation': float(np.corrcoef(p, rgb_p)[0, 1]),
          'mean_abs_probability_difference': float(np.abs(p - rgb_p).mean())}
      print(f'seed {seed} {row:8s} best step {step:4d}  motion encoder '
            f'{moved / np.linalg.norm(start):.4f} from the RGB encoder  '
            f'test probabilities: correlation '
            f'{np.corrcoef(p, rgb_p)[0, 1]:.4f}, mean |difference| '
            f'{np.abs(p - rgb_p).mean():.4f}')
  if args.out:
    text = json.dumps(out, indent=1)
    tables.write_atomic(args.out, lambda f: f.write(text + '\n'))


if __name__ == '__main__':
  main()
