"""Tutorial CNN training step, NCHW vs channels-last (NHWC), interleaved.

python benchmarks/channels_last.py
"""

import time

import torch

from dlhpc.models.cnn import TutorialCNN


def bench(channels_last: bool, batch: int, reps: int = 30) -> float:
    torch.manual_seed(0)
    m = TutorialCNN(1, 28, 28, 10)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters())

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    return reps * batch / (time.perf_counter() - t)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for batch in (32, 128):
        rounds = [(bench(False, batch), bench(True, batch)) for _ in range(3)]
        print(batch, [(round(a), round(b)) for a, b in rounds])
