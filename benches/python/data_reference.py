"""torchvision's PIL pipeline on the same JPEGs as `cargo xtask bench data`.

Resize((255, 255)) -> RandomCrop(224) -> RandomHorizontalFlip -> ToTensor -> Normalize
(CMBH's training transform), DataLoader(batch_size, num_workers, persistent workers),
best epoch of `epochs`. Prints one JSON object.
"""
import json
import os
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class Files(Dataset):
    def __init__(self, root, transform):
        self.paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".jpg"))
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with open(self.paths[i], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), 0


def main():
    root, batch, workers, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    t = transforms.Compose([
        transforms.Resize((255, 255)),
        transforms.RandomCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ds = Files(root, t)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=False,
                        persistent_workers=workers > 0)
    best = float("inf")
    shape = None
    for _ in range(epochs):
        start = time.perf_counter()
        for x, _ in loader:
            shape = list(x.shape)
        best = min(best, time.perf_counter() - start)
    import torchvision
    print(json.dumps({
        "images": len(ds), "seconds": best, "images_per_sec": len(ds) / best,
        "last_batch": shape, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "pillow": Image.__version__,
    }))


if __name__ == "__main__":
    main()
