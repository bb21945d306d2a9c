"""The benchmarks' shared timing loop: best seconds per call over windows.

One warm-up call (compilation, caches), then `repeats` windows of `calls`
calls each; a window's time is divided by `calls` and the best (smallest)
window counts, which on a shared machine is the one least disturbed by
other jobs. Asynchronous work is waited for by `sync`, applied to the
warm-up output and to the last output of each window, inside the timed
span (JAX: `jax.block_until_ready`; a device queue runs in order, so the
last output being ready means the whole window has run).

Scripts run as `PYTHONPATH=. python benchmarks/<name>.py` import it as
`from benchmarks import timing` (a namespace package; no __init__.py).

PyTorch callers pass their own `sync`, e.g. one that calls
`torch.cuda.synchronize()` on CUDA and does nothing on CPU, or `sync=None`
when `fn` already synchronises itself on every call (then nothing more is
waited for at the end of a window).
"""

from collections.abc import Callable
import time
from typing import Any

import jax


def best_seconds(fn: Callable[..., Any], *args: Any, calls: int,
                 repeats: int,
                 sync: Callable[[Any], Any] | None = jax.block_until_ready
                 ) -> float:
  """Best seconds per call of `fn(*args)` over `repeats` windows.

  Args:
    fn: The function to time; called with `args` each time.
    *args: Positional arguments for `fn`.
    calls: Calls per window (>= 1).
    repeats: Timed windows (>= 1); the smallest per-call time counts.
    sync: Called with the warm-up output and with the last output of each
      window, before the window's clock stops; None when `fn` synchronises
      itself (or is synchronous).

  Returns:
    The best window's seconds divided by `calls`.

  Raises:
    ValueError: If `calls` or `repeats` is below 1.
  """
  if calls < 1 or repeats < 1:
    raise ValueError(f'calls ({calls}) and repeats ({repeats}) must be >= 1.')
  out = fn(*args)  # Warm-up.
  if sync is not None:
    sync(out)
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    if sync is not None:
      sync(out)
    best = min(best, (time.perf_counter() - start) / calls)
  return best
