"""PyTorch eager reference of each method's training step at the shapes of `cargo xtask
train-bench` (docs/backends.md, "GPU kit"), for the relata/PyTorch step-time ratio.

Written from relata's reading of the papers, not from the authors' code: each step runs the
method's networks at the paper's sizes and its heavy operations — the backbone passes (CMBH's
whole image and M region crops through ResNet-50 and the three stage sub-networks; ISL's and
CSRMS's CIFAR ResNet-18), HREM's region and caption encoders with the batch-level relation
layers, ISL's softmax over the N-entry memory bank and its update, CSRMS's graph convolution
over every anchor's sampled set — with losses of the same form, and the paper's optimiser.
Like relata's benchmark (which loads every batch on the host), each step copies a host batch
to the device. Prints one JSON object: steady-state seconds per step over `--steps` steps
after `--warmup` ones, and the peak memory PyTorch's allocator reserved.

    python train_reference.py cmbh --size paper --device cuda
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- ResNet (torchvision layout)
class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = None
        if stride != 1 or cin != width:
            self.down = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.down = None
        if stride != 1 or cin != out:
            self.down = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """Returns the four stages' outputs."""

    def __init__(self, depth, width=64, cifar=False):
        super().__init__()
        block, layers = {18: (Basic, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3])}[depth]
        if cifar:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
        cin, stages = width, []
        for i, n in enumerate(layers):
            w = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.channels = [width * 2**i * block.expansion for i in range(4)]

    def forward(self, x):
        x = self.stem(x)
        out = []
        for s in self.stages:
            x = s(x)
            out.append(x)
        return out


# ----------------------------------------------------------------------------- CMBH
class SubNet(nn.Module):
    def __init__(self, c, hidden, dim):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        )
        self.bn_pool = nn.BatchNorm1d(c)
        self.fc = nn.Linear(c, dim)
        self.bn_out = nn.BatchNorm1d(dim)

    def forward(self, x):
        x = self.body(x)
        return F.elu(self.bn_out(self.fc(self.bn_pool(x.flatten(2).amax(2)))))


class Cmbh(nn.Module):
    def __init__(self, depth, width, classes, bits, k=2, dim=512, hidden=512, alpha=16.0):
        super().__init__()
        self.net = ResNet(depth, width)
        self.subnets = nn.ModuleList(SubNet(c, hidden, dim) for c in self.net.channels[1:])
        self.cvectors = nn.Parameter(torch.randn(classes, k, dim))
        self.hash = nn.Linear(classes * k, bits, bias=False)
        self.fusion = nn.Linear(3 * dim, dim)
        self.classifiers = nn.ModuleList(nn.Linear(dim, classes) for _ in range(2))
        self.alpha, self.classes, self.k = alpha, classes, k

    def match(self, f, reduce):
        c = F.normalize(self.cvectors.flatten(0, 1), dim=1)
        m = (F.normalize(f, dim=1) @ c.t()).view(-1, self.classes, self.k)
        return m, self.alpha * (m.sum(2) if reduce == "sum" else m.amax(2))

    def forward(self, x, reduce="sum"):
        maps = self.net(x)[1:]
        fs = [s(m) for s, m in zip(self.subnets, maps)]
        m, y_hash = self.match(fs[1], reduce)
        w = torch.softmax(m.flatten(1), dim=1)
        u = torch.tanh(self.hash(m.flatten(1) * w))
        _, y_fused = self.match(self.fusion(torch.cat(fs, 1)), reduce)
        logits = [y_fused, y_hash] + [c(f) for c, f in zip(self.classifiers, (fs[0], fs[2]))]
        return maps, u, logits


def cmbh_step(model, opt, x, labels, prev_codes, proxies, regions):
    n, bits = x.shape[0], prev_codes.shape[1]
    maps, u, logits = model(x)
    s = (labels[:, None] == labels[None, :]).float()
    pair = ((u @ prev_codes[:n].t() - bits * (2 * s - 1)) ** 2).sum() / bits
    proxy = ((u @ proxies.t() - bits * (2 * F.one_hot(labels, proxies.shape[0]).float() - 1)) ** 2).sum() / bits
    cls = sum(F.cross_entropy(y, labels) for y in logits) * n
    teacher = sum(logits).detach()
    trans = F.kl_div(F.log_softmax(logits[1], 1), F.softmax(teacher, 1), reduction="batchmean") * n
    # Region boxes from the last map's attention peak (on the host, as relata), M crops per image
    # at the input size.
    att = maps[-1].detach().sum(1).flatten(1).argmax(1).cpu()
    side, grid = x.shape[-1], maps[-1].shape[-1]
    crops = []
    for i in range(n):
        cy, cx = divmod(int(att[i]), grid)
        for r in range(regions):
            half = side // (2 + r % 2)
            y0 = max(0, min(side - half, cy * side // grid - half // 2))
            x0 = max(0, min(side - half, cx * side // grid - half // 2))
            crops.append(x[i : i + 1, :, y0 : y0 + half, x0 : x0 + half])
    crops = torch.cat([F.interpolate(c, size=(side, side), mode="bilinear", align_corners=False) for c in crops])
    _, _, crop_logits = model(crops, "max")
    crop_labels = labels.repeat_interleave(regions)
    region = sum(F.cross_entropy(y, crop_labels) for y in crop_logits) * n
    loss = pair + proxy + cls + trans + region
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


# ----------------------------------------------------------------------------- HREM
class Hrem(nn.Module):
    def __init__(self, region_dim, embed, heads, ff, vocab, word_dim):
        super().__init__()
        self.fc = nn.Linear(region_dim, embed)
        self.mlp = nn.Sequential(nn.Linear(region_dim, embed // 2), nn.BatchNorm1d(embed // 2), nn.ReLU(), nn.Linear(embed // 2, embed))
        layer = lambda: nn.TransformerEncoderLayer(embed, heads, ff, dropout=0.1, batch_first=True)
        self.image_layer, self.text_layer = layer(), layer()
        self.relation = layer()
        self.words = nn.Embedding(vocab, word_dim)
        self.gru = nn.GRU(word_dim, embed, batch_first=True, bidirectional=True)
        self.relevance = nn.ModuleList(nn.Sequential(nn.Linear(2 * embed, embed // 2), nn.ReLU(), nn.Linear(embed // 2, 1)) for _ in range(2))

    def encode_images(self, regions):
        b, r, d = regions.shape
        flat = regions.flatten(0, 1)
        x = (self.fc(flat) + self.mlp(flat)).view(b, r, -1)
        return self.image_layer(x).mean(1)

    def encode_texts(self, tokens):
        h, _ = self.gru(self.words(tokens))
        h = (h[..., : h.shape[-1] // 2] + h[..., h.shape[-1] // 2 :]) / 2
        return self.text_layer(h).mean(1)


def hrem_step(model, opt, regions, tokens, top_k=10, margin=0.2):
    img = model.encode_images(regions)
    txt = model.encode_texts(tokens)
    # Instance relations: each modality's embeddings attend over the batch, weighted by the
    # relevance MLPs on the top-k neighbour pairs.
    parts = []
    for e, mlp in zip((img, txt), model.relevance):
        sims = F.normalize(e, dim=1) @ F.normalize(e, dim=1).t()
        idx = sims.topk(top_k, dim=1).indices
        pairs = torch.cat([e[:, None].expand(-1, top_k, -1), e[idx]], 2)
        weight = torch.sigmoid(mlp(pairs)).squeeze(2)
        related = model.relation((e[idx] * weight[..., None]))
        parts.append(F.normalize(e + related.mean(1), dim=1))
    img, txt = parts
    scores = img @ txt.t()
    diag = scores.diag()
    mask = torch.eye(scores.shape[0], device=scores.device, dtype=torch.bool)
    cost_c = (margin + scores - diag[:, None]).clamp(min=0).masked_fill(mask, 0)
    cost_i = (margin + scores - diag[None, :]).clamp(min=0).masked_fill(mask, 0)
    loss = cost_c.max(1).values.sum() + cost_i.max(0).values.sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 2.0)
    opt.step()
    return loss


# ----------------------------------------------------------------------------- ISL
class IslNet(nn.Module):
    def __init__(self, width, dim):
        super().__init__()
        self.net = ResNet(18, width, cifar=True)
        self.fc = nn.Linear(self.net.channels[-1], dim)

    def forward(self, x):
        return F.normalize(self.fc(self.net(x)[-1].mean((2, 3))), dim=1)


def isl_step(model, opt, memory, x, index, temperature=0.1, momentum=0.5):
    f = model(x)
    loss = F.cross_entropy(f @ memory.t() / temperature, index)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        memory.index_copy_(0, index, F.normalize(momentum * memory[index] + (1 - momentum) * f.detach(), dim=1))
    return loss


# ----------------------------------------------------------------------------- CSRMS
class Csrms(nn.Module):
    def __init__(self, width, classes, hidden):
        super().__init__()
        self.net = ResNet(18, width, cifar=True)
        c = self.net.channels[-1]
        self.classifier = nn.Linear(c, classes)
        self.gcn1, self.gcn2 = nn.Linear(c, hidden), nn.Linear(hidden, c)
        self.gcn_head = nn.Linear(c, classes)


def csrms_step(model, opt, x, labels, anchors, positives, negatives):
    feats = model.net(x)[-1].mean((2, 3))
    cls = F.cross_entropy(model.classifier(feats), labels)
    group = 1 + positives + negatives
    g = feats.view(anchors, group, -1)
    # Each anchor's graph: the anchor joined to its positives and negatives, row-normalised.
    adj = torch.zeros(group, group, device=x.device)
    adj[0, :] = 1
    adj[:, 0] = 1
    adj[: 1 + positives, : 1 + positives] = 1
    adj = adj / adj.sum(1, keepdim=True)
    h = F.relu(adj @ model.gcn1(g))
    h = adj @ model.gcn2(h)
    gcn = F.cross_entropy(model.gcn_head(h[:, 0]), labels.view(anchors, group)[:, 0])
    a = F.normalize(g[:, 0], dim=1)
    pos = (a[:, None] * F.normalize(g[:, 1 : 1 + positives], dim=2)).sum(2)
    neg = (a[:, None] * F.normalize(g[:, 1 + positives :], dim=2)).sum(2)
    inter = F.relu(neg.amax(1) - pos.amin(1) + 0.2).mean()
    loss = cls + gcn + inter
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


# ----------------------------------------------------------------------------- driver
def main():
    p = argparse.ArgumentParser()
    p.add_argument("method", choices=["cmbh", "hrem", "isl", "csrms"])
    p.add_argument("--size", choices=["paper", "tiny"], default="paper")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device(a.device)
    paper = a.size == "paper"
    gen = torch.Generator().manual_seed(0)

    if a.method == "cmbh":
        side, batch, regions, bits, classes = (224, 16, 4, 48, 20) if paper else (32, 8, 2, 12, 4)
        model = Cmbh(50 if paper else 18, 64 if paper else 8, classes, bits, dim=512 if paper else 16, hidden=512 if paper else 16)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3 / batch, momentum=0.9, weight_decay=5e-4)
        n_train = batch * 10
        prev_codes = torch.randint(0, 2, (n_train, bits), generator=gen).float() * 2 - 1
        proxies = torch.randint(0, 2, (classes, bits), generator=gen).float() * 2 - 1
        host = lambda: (torch.randn(batch, 3, side, side, generator=gen), torch.randint(0, classes, (batch,), generator=gen))
        model.to(dev)
        prev_codes, proxies = prev_codes.to(dev), proxies.to(dev)
        step = lambda x, y: cmbh_step(model, opt, x, y, prev_codes, proxies, regions)
        shape = f"ResNet-{50 if paper else 18}, {side}², M = {regions} regions, {bits} bits"
    elif a.method == "hrem":
        r, d, batch, embed, heads, ff, word = (36, 2048, 128, 1024, 16, 1024, 300) if paper else (6, 16, 16, 32, 2, 32, 16)
        vocab, length = 1000, 12
        model = Hrem(d, embed, heads, ff, vocab, word).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
        host = lambda: (torch.randn(batch, r, d, generator=gen), torch.randint(1, vocab, (batch, length), generator=gen))
        step = lambda x, t: hrem_step(model, opt, x, t, top_k=10 if paper else 4)
        shape = f"{r} × {d} region features, BiGRU, embedding {embed}"
    elif a.method == "isl":
        n, batch, width, dim = (50_000, 128, 64, 128) if paper else (90, 32, 8, 32)
        model = IslNet(width, dim).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
        memory = F.normalize(torch.rand(n, dim, generator=gen) - 0.5, dim=1).to(dev)
        host = lambda: (torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, n, (batch,), generator=gen))
        step = lambda x, i: isl_step(model, opt, memory, x, i)
        shape = f"CIFAR ResNet-18, 32², memory bank N = {n}"
    else:
        anchors, pos, neg, width, classes, hidden = (32, 5, 5, 64, 10, 512) if paper else (16, 2, 2, 8, 10, 32)
        images = anchors * (1 + pos + neg)
        model = Csrms(width, classes, hidden).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        host = lambda: (torch.randn(images, 3, 32, 32, generator=gen), torch.randint(0, classes, (images,), generator=gen))
        step = lambda x, y: csrms_step(model, opt, x, y, anchors, pos, neg)
        shape = f"CIFAR ResNet-18, 32², {anchors} anchors × (1 + {pos} positives + {neg} negatives)"
        batch = anchors

    model.train()
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            sync()
            t0 = time.perf_counter()
        x, y = host()
        step(x.to(dev, non_blocking=False), y.to(dev))
    sync()
    seconds = (time.perf_counter() - t0) / a.steps
    print(json.dumps({
        "method": a.method,
        "size": a.size,
        "device": str(dev),
        "torch": torch.__version__,
        "shape": shape,
        "batch": batch,
        "timed_steps": a.steps,
        "step_seconds": seconds,
        "steps_per_second": 1.0 / seconds,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved() if dev.type == "cuda" else None,
    }))


if __name__ == "__main__":
    main()
