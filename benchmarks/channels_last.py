"""Tutorial CNN training step, NCHW vs channels-last (NHWC), interleaved: python benchmarks/channels_last.py"""
import time, torch
torch.set_num_threads(1)
from dlhpc.models.cnn import TutorialCNN
def bench(cl, bs, reps=30):
    torch.manual_seed(0)
    m = TutorialCNN(1, 28, 28, 10)
    x = torch.randn(bs, 1, 28, 28); y = torch.randint(0, 10, (bs,))
    if cl:
        m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters())
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
    t = time.perf_counter()
    for _ in range(reps):
        loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
    return reps * bs / (time.perf_counter() - t)
for bs in (32, 128):
    r = []
    for rep in range(3):
        a = bench(False, bs); b = bench(True, bs); r.append((a, b))
    print(bs, [(round(a), round(b)) for a, b in r])
