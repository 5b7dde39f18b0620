"""Benchmarks 1-3 of a single run: initlab vs the ordinary DataLoader pipeline, vs the bare
arithmetic, and the cost of recording. The founding 784-200-200-10 MLP, batch 200, SGD.

    python benchmarks/bench_single_run.py [--device cpu|cuda] [--epochs 3]

Prints seconds per MNIST epoch (300 steps) and the ratios, all measured in this run. On a GPU
also with trainer.cuda_graphs on (the default there) and off (eager): issue 11's floor is 3x.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from check_cuda import Waited, with_checks  # noqa: E402
from common import config, timed  # noqa: E402

from initlab.config import validate  # noqa: E402
from initlab.finite_checks import LogStepChecks  # noqa: E402
from initlab.training import Training  # noqa: E402


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
    # The loop as it was before finite_checks: it waits for the device at each log step's loss check.
    "CUDA graphs, recording every 10 steps, waiting at log steps": ("trainer.cuda_graphs=true",),
    "CUDA graphs, recording off, waiting at log steps": ("trainer.cuda_graphs=true", "trainer.record=false"),
}


def fit(settings, device, waiting: bool) -> float:
    """Seconds of one Training(settings).fit(), with the log steps' checks waited for or not."""
    return with_checks(Waited if waiting else LogStepChecks, lambda: timed(Training(settings, torch.device(device)).fit)[0])


def measure(device, epochs, repeats=3):
    """Seconds per epoch of the bare arithmetic and of initlab's own loop (evaluation after each
    epoch, data already loaded) in each variant (CUDA graphs only on a GPU): each the best of
    `repeats`, taken in turn so that drifts in the machine's speed hit all alike."""
    names = [n for n in VARIANTS if device.startswith("cuda") or "CUDA" not in n]
    settings = {n: validate(config(f"trainer.device={device}", f"trainer.epochs={epochs}", *VARIANTS[n])) for n in names}
    for n in names:  # warm-up (loads the data once; the first CUDA graph captures)
        fit(settings[n], device, "waiting" in n)
    bare = bare_epoch_fn(device)
    best = {n: float("inf") for n in ["bare", *names]}
    for _ in range(repeats):
        best["bare"] = min(best["bare"], timed(bare)[0])
        for n in names:
            best[n] = min(best[n], fit(settings[n], device, "waiting" in n) / epochs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-dataloader", action="store_true", help="skip the (slow) DataLoader epoch")
    args = parser.parse_args()
    device = args.device
    root = validate(config())["data"]["source"]["root"]
    print(f"device: {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else f'{torch.get_num_threads()} threads'}),"
          f" torch {torch.__version__}")
    best = measure(device, args.epochs)
    rows = list(best.items())
    if not args.no_dataloader:
        rows.insert(0, ("DataLoader + ToTensor/Normalize", dataloader_epoch(device, root)))
    for name, seconds in rows:
        print(f"  {'bare arithmetic (random tensors)' if name == 'bare' else name:<40} {seconds:7.3f} s/epoch")
    default = "CUDA graphs, recording every 10 steps" if device.startswith("cuda") else "eager, recording every 10 steps"
    silent = default.replace("recording every 10 steps", "recording off")
    if not args.no_dataloader:
        print(f"1. DataLoader pipeline / initlab:       {dict(rows)['DataLoader + ToTensor/Normalize'] / best[default]:6.1f}x  (floor 10x)")
    print(f"2. initlab / bare arithmetic:           {best[default] / best['bare']:6.2f}x  (floor: within 1.3x)")
    print(f"3. recording overhead:                  {100 * (best[default] / best[silent] - 1):6.1f}%  (floor: under 10%)")
    if device.startswith("cuda"):
        print(f"4. CUDA graphs, speed-up over eager:    {best['eager, recording every 10 steps'] / best[default]:6.2f}x  (floor 3x)")
        waited = best[f"{default}, waiting at log steps"] / best[f"{silent}, waiting at log steps"] - 1
        print(f"   recording overhead when the loop waits at each log step (before finite_checks): {100 * waited:.1f}%")


if __name__ == "__main__":
    main()
