"""Benchmarks 1-3 of a single run: initlab vs the ordinary DataLoader pipeline, vs the bare
arithmetic, and the cost of recording. The founding 784-200-200-10 MLP, batch 200, SGD.

    python benchmarks/bench_single_run.py [--device cpu|cuda] [--epochs 10] [--variants graphs]

Prints seconds per MNIST epoch (300 steps) and the ratios, all measured in this run. Each variant's
`Training.fit` is timed for --epochs epochs (the default run's 10) and for one: per epoch of the
whole run (what a user's run pays, the CUDA graphs' capture included), per epoch once running
(the difference over the epochs in between), and the run's one-off cost (the one-epoch run less
an epoch). On a GPU also with trainer.cuda_graphs on (the default there) and off (eager):
issue 11's floor is 3x. --variants and --skip pick variants by words of their names.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from common import config, timed  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.train.loop import Training  # noqa: E402


def mlp(device):
    return nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10)).to(device)


def bare_epoch_fn(device, steps=300, batch=200):
    """One epoch of the same matmuls on random in-memory tensors: no data pipeline, no recording, no evaluation."""
    x, y = torch.randn(steps * batch, 784, device=device), torch.randint(10, (steps * batch,), device=device)
    model = mlp(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def epoch():
        for idx in torch.randperm(len(y), device=device).split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    epoch()  # warm-up
    return epoch


def dataloader_epoch(device, root, batch=200):
    """The ordinary PyTorch way: torchvision MNIST with ToTensor/Normalize through a DataLoader."""
    from torchvision import datasets, transforms

    data = datasets.MNIST(root, train=True, download=False, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True)
    model = mlp(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def epoch():
        for xb, yb in loader:
            xb, yb = xb.view(len(xb), -1).to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return timed(epoch)[0]


VARIANTS = {  # name: overrides
    "eager, recording every 10 steps": ("trainer.cuda_graphs=false",),
    "eager, recording off": ("trainer.cuda_graphs=false", "trainer.record=false"),
    "CUDA graphs, recording every 10 steps": ("trainer.cuda_graphs=true",),
    "CUDA graphs, recording off": ("trainer.cuda_graphs=true", "trainer.record=false"),
}


def fit(settings, device, name: str) -> float:
    """Seconds of one Training(settings).fit()."""
    return timed(Training(settings, torch.device(device)).fit)[0]


def measure(device, epochs, names, repeats=5):
    """Seconds of the bare arithmetic's epoch, and of initlab's own loop (evaluation after each epoch,
    data already loaded) in each variant of `names`, as {name: (seconds of `epochs` epochs, of one)}:
    each the best of `repeats`, taken in turn so that drifts in the machine's speed hit all alike."""
    settings = {(n, e): validate(config(f"trainer.device={device}", f"trainer.epochs={e}", *VARIANTS[n]))
                for n in names for e in (epochs, 1)}
    for n in names:  # warm-up (loads the data once; the first CUDA graph captures)
        fit(settings[n, 1], device, n)
    bare = bare_epoch_fn(device)
    best_bare = float("inf")
    best = {key: float("inf") for key in settings}
    for _ in range(repeats):
        best_bare = min(best_bare, timed(bare)[0])
        for key in settings:
            best[key] = min(best[key], fit(settings[key], device, key[0]))
    return best_bare, {n: (best[n, epochs], best[n, 1]) for n in names}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=10, help="the longer run's epochs (the default run has 10)")
    parser.add_argument("--no-dataloader", action="store_true", help="skip the (slow) DataLoader epoch")
    parser.add_argument("--variants", nargs="*", default=[], help="only the variants whose name holds one of these words")
    parser.add_argument("--skip", nargs="*", default=[], help="not the variants whose name holds one of these words")
    parser.add_argument("--repeats", type=int, default=5, help="each variant's time is the best of this many runs")
    args = parser.parse_args()
    device, epochs = args.device, args.epochs
    assert epochs > 1, "--epochs: at least 2 (the one-off cost is the difference to a one-epoch run)"
    root = validate(config())["data"]["source"]["root"]
    print(f"device: {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else f'{torch.get_num_threads()} threads'}),"
          f" torch {torch.__version__}")
    names = [n for n in VARIANTS if (device.startswith("cuda") or "CUDA" not in n)
             and (not args.variants or any(w in n for w in args.variants)) and not any(w in n for w in args.skip)]
    bare, runs = measure(device, epochs, names, args.repeats)
    per_epoch = {n: long / epochs for n, (long, _) in runs.items()}
    running = {n: (long - one) / (epochs - 1) for n, (long, one) in runs.items()}
    one_off = {n: one - running[n] for n, (_, one) in runs.items()}
    dataloader = None if args.no_dataloader else dataloader_epoch(device, root)
    if dataloader is not None:
        print(f"  {'DataLoader + ToTensor/Normalize':<62} {dataloader:7.3f} s/epoch")
    print(f"  {'bare arithmetic (random tensors)':<62} {bare:7.3f} s/epoch")
    print(f"  {'initlab, per epoch of a run of ' + str(epochs) + ' epochs | once running | one-off':<62}")
    for n in names:
        print(f"  {n:<62} {per_epoch[n]:7.4f} | {running[n]:7.4f} s/epoch | {one_off[n]:7.3f} s")
    default = "CUDA graphs, recording every 10 steps" if device.startswith("cuda") else "eager, recording every 10 steps"
    silent = default.replace("recording every 10 steps", "recording off")
    if default not in names or silent not in names:
        return
    if dataloader is not None:
        print(f"1. DataLoader pipeline / initlab:       {dataloader / per_epoch[default]:6.1f}x  (floor 10x)")
    print(f"2. initlab / bare arithmetic:           {per_epoch[default] / bare:6.2f}x  (floor: within 1.3x)")
    print(f"3. recording overhead, a run of {epochs} epochs: {100 * (per_epoch[default] / per_epoch[silent] - 1):6.1f}%  "
          f"(floor: under 10%); once running {100 * (running[default] / running[silent] - 1):.1f}%, "
          f"one-off {1e3 * (one_off[default] - one_off[silent]):+.1f} ms")
    if device.startswith("cuda") and "eager, recording every 10 steps" in names:
        print(f"4. CUDA graphs, speed-up over eager:    {per_epoch['eager, recording every 10 steps'] / per_epoch[default]:6.2f}x  (floor 3x)")


if __name__ == "__main__":
    main()
