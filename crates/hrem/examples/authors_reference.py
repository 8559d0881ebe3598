"""The authors' HREM code on relata's synth-captions: an independent check of docs/hrem.md's
finding that the relation module does not beat the baseline on that data.

It trains the released PyTorch code (CrossmodalGroup/HREM, commit fb854a9 or later; a checkout
the user gives, nothing of it is copied here) with relata's default preset: the image encoder
(`lib.encoders.EncoderImageAggr`), the relation module and its losses (`graph_lib.GraphLoss`,
`lib.mca`, `lib.loss`: Fusion, distance-weighted triplets, the KL regulariser) are imported
unchanged. Written here, because the released code is BERT-only and reads SCAN's layout through
a BERT tokenizer: a BiGRU text encoder (embedding → packed bidirectional GRU → mean of the two
directions, then the same pooling as the authors' BERT encoder), the word augmentation on that
vocabulary (<unk> for the mask), the batches (captions shuffled, region drop 0.2, drop_last),
AdamW with weight decay 1e-4, clip 2, the lr steps, and evaluation (R@K both ways, rSum; the
model kept at the best dev rSum, never chosen on test).

    cargo xtask data synth synth-captions /tmp/synth42 --seed 42 --test 1000   # the default reproduction's data
    git clone https://github.com/CrossmodalGroup/HREM /tmp/HREM                # needs torch and numpy
    python crates/hrem/examples/authors_reference.py /tmp/synth42 /tmp/HREM /tmp/base.json relations=false
    python crates/hrem/examples/authors_reference.py /tmp/synth42 /tmp/HREM /tmp/full.json relations=true

keys (relata's default preset unless given): relations=true|false, seed=42, epochs=12,
milestones=8,11 (lr ×0.1), lr=1e-3, batch=64, warmup=160 (steps before the relation terms),
embed=128, heads=4, word_dim=64, dropout=0.1, lambda=1, threshold=0.5, reg=10, threads=2,
init=authors|burn (burn: relata's initialisation before 2026-11-26, burn's defaults),
specials=false|true (true: every caption wrapped in <start> … <end> tokens, as relata's BiGRU
vocabulary does and as BERT's [CLS] … [SEP]; those two slots then take part in the fragment
scores and the pooling), drop_last=true|false (false: the epoch's last, shorter batch is
trained too, as relata does).
The JSON holds every epoch's dev and test recalls; `test` is the test row of the best dev epoch.
"""
import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from authors_common import bigru_text, import_authors  # noqa: E402

if len(sys.argv) < 4:
    sys.exit(__doc__)
data_dir, authors, out_json = sys.argv[1:4]
try:
    kv = dict(a.split("=", 1) for a in sys.argv[4:])
except ValueError:
    sys.exit(f"arguments after OUT_JSON are key=value, got {sys.argv[4:]}")

graph_lib, encoders = import_authors(authors)
import lib.loss as authors_loss  # noqa: E402

# Counts the triplet directions the released sampler scores as zero (torch.multinomial raises on
# a row whose float32 weights all underflowed; the code then returns 0). Draws are unchanged.
dropped = {"directions": 0, "calls": 0}
_multinomial = authors_loss.torch.multinomial


def counted_multinomial(*args, **kwargs):
    dropped["calls"] += 1
    try:
        return _multinomial(*args, **kwargs)
    except RuntimeError:
        dropped["directions"] += 1
        raise


authors_loss.torch.multinomial = counted_multinomial
GraphLoss, EncoderImageAggr = graph_lib.GraphLoss, encoders.EncoderImageAggr
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_num_threads(int(kv.get("threads", "2")))

seed = int(kv.get("seed", 42))
relations = kv.get("relations", "true") == "true"
epochs = int(kv.get("epochs", 12))
milestones = [int(m) for m in kv.get("milestones", "8,11").split(",")]
embed = int(kv.get("embed", 128))
lr = float(kv.get("lr", 1e-3))
batch = int(kv.get("batch", 64))
word_dim = int(kv.get("word_dim", 64))
# The authors' arguments (arguments.py + graph_lib.extra_parameters), relata's default sizes.
opt = argparse.Namespace(
    dataset="f30k", embed_size=embed, nhead=int(kv.get("heads", 4)),
    dropout=float(kv.get("dropout", 0.1)), margin=0.2, base_loss="trip", gnn_loss="trip",
    warmup=int(kv.get("warmup", 160)) if relations else 10**12,
    residual_weight=0.8, num_layers_enc=1, graph_lr_factor=1.0,
    mask_weight=float(kv.get("lambda", 1.0)), threshold=float(kv.get("threshold", 0.5)),
    topk=10, reg_loss_weight=float(kv.get("reg", 10)), norm_input=1, cross_loss=1,
    mask_repeat=1, max_violation=False, img_dim=0, no_imgnorm=False, no_txtnorm=False,
)
random.seed(seed)
np.random.seed(seed)
torch.manual_seed(seed)


def load(split):
    ims = np.load(os.path.join(data_dir, f"{split}_ims.npy")).astype(np.float32)
    with open(os.path.join(data_dir, f"{split}_caps.txt")) as f:
        caps = [line.strip().lower().split() for line in f]
    if len(caps) != 5 * len(ims):
        sys.exit(f"{data_dir}/{split}_caps.txt: {len(caps)} captions for {len(ims)} images, not 5 each")
    return ims, caps


train_ims, train_caps = load("train")
dev_ims, dev_caps = load("dev")
test_ims, test_caps = load("test")
opt.img_dim = train_ims.shape[-1]
vocab = {"<pad>": 0, "<unk>": 1}
specials = kv.get("specials", "false") == "true"
if specials:
    vocab.update({"<start>": 2, "<end>": 3})
for caption in train_caps:
    for word in caption:
        vocab.setdefault(word, len(vocab))


def token_ids(caption, train):
    """Word ids; in training each word with p = 0.2: 50% <unk>, 10% a random word, 40% dropped
    (the authors' process_caption_bert on whole words)."""
    out = []
    for word in caption:
        p = random.random()
        if train and p < 0.2:
            p /= 0.2
            if p < 0.5:
                out.append(1)
            elif p < 0.6:
                out.append(random.randrange(4 if specials else 2, len(vocab)))
        else:
            out.append(vocab.get(word, 1))
    if specials:
        return [vocab["<start>"]] + out + [vocab["<end>"]]
    return out or [1]


img_enc = EncoderImageAggr(opt, opt.img_dim, embed).to(device)
txt_enc = bigru_text(encoders, opt, len(vocab), word_dim, embed).to(device)
criterion = GraphLoss(opt).to(device)
if kv.get("init", "authors") == "burn":
    # relata's initialisation before 2026-11-26 (burn's defaults), to tell what the starting
    # point does: FC_MLP biases drawn from the Xavier range of their layer; every attention
    # layer's in-projection U(±1/√d) block by block, its biases U(±1/√d).
    with torch.no_grad():
        for layer in img_enc.fc.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                bound = (6.0 / (fan_in + fan_out)) ** 0.5
                layer.bias.uniform_(-bound, bound)
        for module in (img_enc, txt_enc, criterion):
            for attention in module.modules():
                if isinstance(attention, nn.MultiheadAttention):
                    bound = attention.embed_dim ** -0.5
                    attention.in_proj_weight.uniform_(-bound, bound)
                    attention.in_proj_bias.uniform_(-bound, bound)
                    attention.out_proj.bias.uniform_(-bound, bound)
elif kv.get("init", "authors") != "authors":
    sys.exit(f"init={kv['init']}: authors or burn")
params = list(txt_enc.parameters()) + list(img_enc.parameters()) + list(criterion.parameters())
optimizer = torch.optim.AdamW(
    [{"params": m.parameters(), "lr": lr} for m in (txt_enc, img_enc, criterion)],
    lr=lr, weight_decay=1e-4,
)


def pad_tokens(seqs):
    # At least top-k = 10 columns: the authors' fragment scores take the top 10 of each row.
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros(len(seqs), max(int(lengths.max()), opt.topk), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return tokens.to(device), lengths.to(device)


def train_batch(caption_ids):
    images = [train_ims[c // 5] for c in caption_ids]
    images = [im[np.random.rand(im.shape[0]) > 0.2] for im in images]  # region drop
    image_lengths = torch.tensor([len(im) for im in images])
    regions = torch.zeros(len(images), int(image_lengths.max()), opt.img_dim)
    for i, im in enumerate(images):
        regions[i, : len(im)] = torch.from_numpy(im)
    tokens, lengths = pad_tokens([token_ids(train_caps[c], True) for c in caption_ids])
    image_ids = torch.tensor([c // 5 for c in caption_ids]).to(device)
    return regions.to(device), image_lengths.to(device), tokens, lengths, image_ids


@torch.no_grad()
def recalls(ims, caps):
    """R@1/5/10 image → text and text → image and rSum, as SCAN's i2t / t2i."""
    img_enc.eval()
    txt_enc.eval()
    regions = torch.from_numpy(ims).to(device)
    v = img_enc(regions, torch.full((len(ims),), ims.shape[1], device=device))
    u = torch.cat([
        txt_enc(*pad_tokens([token_ids(c, False) for c in caps[s : s + 500]]))
        for s in range(0, len(caps), 500)
    ])
    sims = (v @ u.t()).cpu().numpy()
    img_enc.train()
    txt_enc.train()
    n = len(ims)
    rank_i2t = np.array([
        np.where(np.isin(np.argsort(-sims[i], kind="stable"), range(5 * i, 5 * i + 5)))[0][0]
        for i in range(n)
    ])
    rank_t2i = np.array([
        np.where(np.argsort(-sims[:, j], kind="stable") == j // 5)[0][0] for j in range(5 * n)
    ])
    row = [100.0 * np.mean(r < k) for r in (rank_i2t, rank_t2i) for k in (1, 5, 10)]
    return row + [sum(row)]


best_dev, best_test, best_epoch, log = -1.0, None, None, []
start = time.time()
for epoch in range(epochs):
    if epoch in milestones:
        for group in optimizer.param_groups:
            group["lr"] *= 0.1
    order = np.random.permutation(len(train_caps))
    losses = []
    # drop_last=false keeps the epoch's last, shorter batch (as relata does) unless it would
    # hold a single caption.
    steps = len(order) // batch
    if kv.get("drop_last", "true") == "false" and len(order) % batch > 1:
        steps += 1
    for b in range(steps):
        regions, image_lengths, tokens, lengths, image_ids = train_batch(order[b * batch : (b + 1) * batch])
        v = img_enc(regions, image_lengths, graph=True)
        u = txt_enc(tokens, lengths, graph=True)
        optimizer.zero_grad()
        loss = criterion(v, u, img_ids=image_ids)
        if not torch.isfinite(loss):
            sys.exit(f"epoch {epoch}: the loss is {loss.item()}")
        loss.backward()
        nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()
        losses.append(loss.item())
    dev, test = recalls(dev_ims, dev_caps), recalls(test_ims, test_caps)
    log.append({"epoch": epoch, "loss": float(np.mean(losses)), "dev": dev, "test": test,
                "dropped_directions": dropped["directions"], "directions": dropped["calls"]})
    print(f"epoch {epoch} loss {np.mean(losses):.3f} dev rSum {dev[-1]:.1f} test rSum {test[-1]:.1f}"
          f" directions scored zero {dropped['directions']}/{dropped['calls']}"
          f" ({time.time() - start:.0f} s)", flush=True)
    if dev[-1] > best_dev:
        best_dev, best_test, best_epoch = dev[-1], test, epoch
    result = {"args": kv, "relations": relations, "best_dev": best_dev, "best_epoch": best_epoch,
              "test": best_test, "log": log, "seconds": time.time() - start}
    with open(out_json, "w") as f:
        json.dump(result, f)
print("test at the best dev epoch (i2t R@1/5/10, t2i R@1/5/10, rSum):",
      " ".join(f"{x:.1f}" for x in best_test))
