r"""ResNet-34 and LP-Net train-step throughput: au_jax (JAX) beside PyTorch.

Both frameworks run the same layers in the same process on the same data
shapes: ResNet-34 (torchvision layout, written out here in PyTorch since
torchvision is not installed) with global pooling and a 12-way linear head,
and LP-Net = that stem + 12 per-AU LSTMs over the k local features (PyTorch:
one nn.LSTM + Linear(., 1) per AU in a ModuleList, the way a port would
write it) + P-Net (136 -> 256 -> D -> 12). Loss: sigmoid cross-entropy
(+ |f_au . f_s| for LP-Net); optimiser Adam 1e-3 in both. A train step is
forward + backward + update; images/s is the best of --repeats windows of
--steps steps, after one warm-up step. JAX: jit on jax.devices()[0];
PyTorch: eager on CPU (or CUDA when present), float32 both.

torch is a benchmark-only extra (never an au_jax dependency):

  PYTHONPATH=. python benchmarks/lpnet_throughput.py --input_size=96 \
      --batch_size=8 --width=64 --steps=2 --repeats=2

Measured 2026-11-28 on the shared 2-core x86_64 CPU, Linux, python 3.11.7,
jax 0.10.2 (XLA:CPU), torch 2.13.0+cpu, float32, 12 AUs, on a shared
2-core machine (figures within one
run are comparable, across runs they move by up to ~1.6x). img/s, train
step (ms/step):

  96x96 (k = 9), batch 8, width 64 (the real ResNet-34, LSTM 128):
    command above (torch default 2 threads, load ~17-19):
      ResNet-34  jax 4.53 (1766)   torch 0.57 (13954)
      LP-Net     jax 5.48 (1461)   torch 0.84 (9514)
    same with --torch_threads=1 (load ~10):
      ResNet-34  jax 2.89 (2770)   torch 2.21 (3618)
      LP-Net     jax 2.29 (3492)   torch 2.50 (3196)
  96x96, batch 32, width 16, LSTM 64 (configs/lpnet.py CPU job; torch 2
  threads, load ~15): ResNet-34 jax 77.5 (413), torch 13.9 (2297);
  LP-Net jax 53.0 (604), torch 8.1 (3929).
  JAX compile: 26-36 s (width 64), 12-26 s (width 16).

Reading: on an oversubscribed machine torch's 2 spinning OpenMP threads
lose most of their time (0.6 img/s); with one thread torch and JAX are
within ~1.3x of each other either way, i.e. the same layers cost the same
on CPU, and the L-Net's 12 sequential LSTMs over k = 9 positions add little
to the ResNet-34 step at this size in either framework (the JAX L-Net runs
the 12 LSTMs as one vmapped recurrence). An unloaded machine is needed for
firmer numbers. No GPU was lent to this task, so there are no GPU figures.
"""

import platform
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from au_jax.methods import lpnet as lpnet_method
from au_jax.models import lpnet
from au_jax.models import resnet
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch_size', 8, 'Images per step.')
_SIZE = flags.DEFINE_integer('input_size', 96, 'Input height = width.')
_WIDTH = flags.DEFINE_integer('width', 64, 'ResNet width (64 = standard).')
_LSTM = flags.DEFINE_integer('lstm_features', 128, 'LSTM hidden size.')
_NUM_AUS = flags.DEFINE_integer('num_aus', 12, 'Outputs (BP4D: 12).')
_STEPS = flags.DEFINE_integer('steps', 2, 'Timed steps per window.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Windows; the best counts.')
_MODELS = flags.DEFINE_list('models', ['resnet34', 'lpnet'],
                            'Any of resnet34, lpnet.')
_TORCH_THREADS = flags.DEFINE_integer(
    'torch_threads', 0, 'torch.set_num_threads (0: torch default).')
_FRAMEWORKS = flags.DEFINE_list('frameworks', ['jax', 'torch'],
                                'Any of jax, torch.')


# -------------------------------------------------------------------- JAX


def _jax_step(name: str, batch: dict[str, np.ndarray]):
  """(jitted step, its arguments, compile seconds) for model `name`."""
  num_aus = _NUM_AUS.value
  if name == 'resnet34':
    model = resnet.Model(num_aus=num_aus, depth=34, width=_WIDTH.value)
  else:
    model = lpnet.Model(num_aus=num_aus, depth=34, width=_WIDTH.value,
                        lstm_features=_LSTM.value)
  config = ml_collections.ConfigDict(dict(
      selective_learning=True, selective_learning_target=0.5,
      orthogonality_weight=1.0))
  device = jax.devices()[0]
  batch = jax.device_put(batch, device)
  variables = jax.jit(lambda b: model.init(jax.random.key(0), b, False))(
      batch)
  tx = optax.adam(1e-3)
  opt_state = tx.init(variables['params'])

  def step(params, batch_stats, opt_state, batch):
    def loss_fn(params):
      outputs, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, batch, True,
          mutable=['batch_stats'])
      if name == 'resnet34':
        loss = optax.sigmoid_binary_cross_entropy(
            outputs[0], batch['au_occurrence'].astype(jnp.float32)).mean()
      else:
        loss, _ = lpnet_method.loss_fn(outputs, batch, config)
      return loss, updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    param_updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, param_updates),
            updates['batch_stats'], opt_state, loss)

  args = (variables['params'], variables['batch_stats'], opt_state, batch)
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*args).compile()
  compile_s = time.perf_counter() - start
  state = list(args)

  def run():
    state[:3] = compiled(*state)[:3]
    return state[0]

  return run, compile_s


# ---------------------------------------------------------------- PyTorch


def _torch_step(name: str, batch: dict[str, np.ndarray]):
  """(step closure, build seconds): the same layers in PyTorch."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  width, num_aus = _WIDTH.value, _NUM_AUS.value

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.down = None
      if stride != 1 or cin != cout:
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return torch.relu(y + (x if self.down is None else self.down(x)))

  def resnet34():
    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = width
    for stage, blocks in enumerate((3, 4, 6, 3)):
      cout = width * 2**stage
      for index in range(blocks):
        layers.append(Block(cin, cout, 2 if stage and not index else 1))
        cin = cout
    return nn.Sequential(*layers), cin

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.stem, channels = resnet34()
      if name == 'resnet34':
        self.output = nn.Linear(channels, num_aus)
      else:
        self.lstms = nn.ModuleList(
            nn.LSTM(channels, _LSTM.value, batch_first=True)
            for _ in range(num_aus))
        self.readouts = nn.ModuleList(nn.Linear(_LSTM.value, 1)
                                      for _ in range(num_aus))
        self.pnet = nn.Sequential(nn.Linear(136, 256), nn.ReLU(),
                                  nn.Linear(256, channels))
        self.terms = nn.Linear(channels, num_aus)

    def forward(self, image, landmarks):
      local = self.stem(image).flatten(2).transpose(1, 2)  # [B, k, D]
      f_au = local.mean(1)
      if name == 'resnet34':
        return self.output(f_au), None
      logits = torch.cat([readout(lstm(local)[0]).mean(1) for lstm, readout
                          in zip(self.lstms, self.readouts)], dim=1)
      f_s = self.pnet(landmarks.flatten(1))
      return logits + self.terms(f_s), (f_au * f_s).sum(1).abs().mean()

  start = time.perf_counter()
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  net = Net().to(device).train()
  image = torch.from_numpy(batch['image']).permute(0, 3, 1, 2).contiguous()
  image = image.to(device)
  landmarks = torch.from_numpy(batch['landmarks']).to(device)
  labels = torch.from_numpy(batch['au_occurrence']).float().to(device)
  optimiser = torch.optim.Adam(net.parameters(), 1e-3)
  build_s = time.perf_counter() - start

  def run():
    optimiser.zero_grad(set_to_none=True)
    logits, orthogonality = net(image, landmarks)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    if orthogonality is not None:
      loss = loss + orthogonality
    loss.backward()
    optimiser.step()
    if device == 'cuda':
      torch.cuda.synchronize()
    return loss

  return run, build_s


def _best_seconds(run, block) -> float:
  return timing.best_seconds(run, calls=_STEPS.value, repeats=_REPEATS.value,
                             sync=block)


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  size, batch_size = _SIZE.value, _BATCH.value
  batch = {
      'image': rng.normal(size=(batch_size, size, size, 3)).astype(np.float32),
      'landmarks': rng.uniform(0, size, (batch_size, 68, 2)).astype(
          np.float32),
      'au_occurrence': rng.integers(0, 2, (batch_size, _NUM_AUS.value)
                                    ).astype(np.int32)}
  versions = [f'python {platform.python_version()}', f'jax {jax.__version__}']
  if 'torch' in _FRAMEWORKS.value:
    import torch  # pylint: disable=g-import-not-at-top
    if _TORCH_THREADS.value:
      torch.set_num_threads(_TORCH_THREADS.value)
    versions.append(f'torch {torch.__version__} '
                    f'({torch.get_num_threads()} threads)')
  device = jax.devices()[0]
  print(f'machine: {platform.machine()} {platform.processor() or ""} '
        f'{platform.system()}; jax device {device.device_kind} '
        f'({device.platform}); {", ".join(versions)}')
  k = (-(-size // 32))**2
  print(f'input {size}x{size} (k = {k}), batch {batch_size}, width '
        f'{_WIDTH.value}, LSTM {_LSTM.value}, {_NUM_AUS.value} AUs')
  for name in _MODELS.value:
    if name not in ('resnet34', 'lpnet'):
      sys.exit(f'--models: unknown model {name!r} (resnet34, lpnet).')
    for framework in _FRAMEWORKS.value:
      if framework == 'jax':
        run, setup_s = _jax_step(name, batch)
        seconds = _best_seconds(run, jax.block_until_ready)
        setup = f'compile {setup_s:.1f} s'
      elif framework == 'torch':
        run, setup_s = _torch_step(name, batch)
        seconds = _best_seconds(run, lambda loss: loss.item())
        setup = f'build {setup_s:.1f} s'
      else:
        sys.exit(f'--frameworks: unknown framework {framework!r}.')
      print(f'{name:9s} {framework:6s} train step {batch_size / seconds:7.2f} '
            f'img/s ({1e3 * seconds:.0f} ms/step, {setup})', flush=True)


if __name__ == '__main__':
  app.run(main)
