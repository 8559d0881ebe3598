"""PyTorch CPU timings for `cargo xtask bench backbone`: torchvision ResNet forward and
forward+backward (mean of the logits), batch 16, best of `reps` after one warm-up.
Usage: python backbone_reference.py THREADS REPS CASE... with CASE = resnet18:112:fwd etc.
Prints one JSON object {case: seconds}."""
import json
import sys
import time

import torch
import torchvision

threads, reps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
out = {}
for case in sys.argv[3:]:
    name, size, mode = case.split(":")
    model = getattr(torchvision.models, name)(weights=None)
    x = torch.randn(16, 3, int(size), int(size))
    if mode == "fwd":
        model.eval()
    else:
        model.train()
    best = float("inf")
    for i in range(reps + 1):
        start = time.perf_counter()
        if mode == "fwd":
            with torch.no_grad():
                model(x)
        else:
            model.zero_grad(set_to_none=True)
            model(x).mean().backward()
        if i > 0:
            best = min(best, time.perf_counter() - start)
    out[case] = best
print(json.dumps({"timings": out, "torch": torch.__version__, "threads": threads}))
