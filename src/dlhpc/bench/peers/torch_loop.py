"""A plain PyTorch loop in the usual tutorial style: DataLoader over a TensorDataset.

python torch_loop.py DATA.npz --threads 2 --epochs 10 --batch-size 32 [--device cuda]

On CUDA it does what such tutorials do: the model on the GPU, each batch moved there with
``.to(device)`` inside the loop.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    z = np.load(a.data)
    x_train = torch.tensor(z["x_train"], dtype=torch.float32).unsqueeze(1) / 255
    x_test = torch.tensor(z["x_test"], dtype=torch.float32).unsqueeze(1) / 255
    y_train, y_test = torch.tensor(z["y_train"]).long(), torch.tensor(z["y_test"]).long()
    k = int(y_train.max()) + 1
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(576, 64),
        nn.ReLU(),
        nn.Linear(64, k),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=a.batch_size, shuffle=True)
    epochs, train_s = [], 0.0
    for e in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            acc = (model(x_test.to(device)).argmax(1).cpu() == y_test).float().mean().item()
        epochs.append({"epoch": e + 1, "train_seconds": train_s, "test_accuracy": acc})
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {
                "tool": "pytorch-loop",
                "version": torch.__version__,
                "params": params,
                "train_samples": len(x_train),
                "epochs": epochs,
            }
        )
    )


if __name__ == "__main__":
    main()
