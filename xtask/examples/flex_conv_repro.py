"""PyTorch side of xtask/examples/flex_conv_repro.rs: the same three pieces of a convolution's
training step (forward, input gradient, weight gradient) at the same shapes, best of 10 after
one warm-up. The gradients go through `torch.nn.grad`, i.e. aten's convolution_backward, which
is what autograd runs. Usage: python flex_conv_repro.py [THREADS]"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
CASES = [(3, 64, 7, 2, 112), (64, 64, 3, 1, 28), (128, 128, 3, 1, 14), (256, 256, 3, 1, 7),
         (64, 128, 3, 2, 28)]


def best(f, reps=10):
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times[1:])


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
print("| conv (c_in→c_out, k/s, input) | forward (s) | input grad (s) | weight grad (s) |")
print("| --- | --- | --- | --- |")
with torch.no_grad():
    for cin, cout, k, s, hw in CASES:
        p = k // 2
        x = torch.rand(16, cin, hw, hw)
        w = torch.rand(cout, cin, k, k)
        g = torch.rand(16, cout, (hw + 2 * p - k) // s + 1, (hw + 2 * p - k) // s + 1)
        fwd = best(lambda: F.conv2d(x, w, stride=s, padding=p))
        dx = best(lambda: torch.nn.grad.conv2d_input(x.shape, w, g, stride=s, padding=p))
        dw = best(lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, stride=s, padding=p))
        print(f"| {cin}→{cout}, {k}×{k}/{s}, {hw}² | {fwd:.4f} | {dx:.4f} | {dw:.4f} |")
