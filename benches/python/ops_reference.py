"""PyTorch CPU timings for `cargo xtask bench ops`: the layers a ResNet-18 step spends its time
in, at the shapes of a 112x112 input and batch 16, forward and forward+backward (sum of the
output, gradients for the input and the parameters), best of `reps` after one warm-up.
Usage: python ops_reference.py THREADS REPS CASE... (CASE as printed by the Rust side).
Prints one JSON object."""
import json
import sys
import time

import torch

threads, reps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)


def layer(spec):
    kind, *dims = spec.split("-")
    d = [int(v) for v in dims]
    if kind == "conv":  # conv-cin-cout-k-stride-hw
        cin, cout, k, s, hw = d
        return torch.nn.Conv2d(cin, cout, k, s, k // 2, bias=False), (16, cin, hw, hw)
    if kind == "bn":  # bn-c-hw
        c, hw = d
        return torch.nn.BatchNorm2d(c), (16, c, hw, hw)
    if kind == "maxpool":  # maxpool-c-hw
        c, hw = d
        return torch.nn.MaxPool2d(3, 2, 1), (16, c, hw, hw)
    if kind == "relu":  # relu-c-hw
        c, hw = d
        return torch.nn.ReLU(), (16, c, hw, hw)
    raise ValueError(spec)


out = {}
for case in sys.argv[3:]:
    spec, mode = case.split(":")
    module, shape = layer(spec)
    # Forward alone is inference (batch norm on running statistics), as on the Rust side's
    # plain device; forward + backward is training mode.
    module.train(mode == "fwdbwd")
    x = torch.randn(*shape, requires_grad=(mode == "fwdbwd"))
    best = float("inf")
    for i in range(reps + 1):
        start = time.perf_counter()
        if mode == "fwd":
            with torch.no_grad():
                module(x)
        else:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()
        if i > 0:
            best = min(best, time.perf_counter() - start)
    out[case] = best
print(json.dumps({"timings": out, "torch": torch.__version__, "threads": threads}))
