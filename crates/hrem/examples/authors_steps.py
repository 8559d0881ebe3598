"""The released HREM code's side of the step-parity harness (docs/hrem.md, "Step parity").

Reads a case written by relata (`cargo xtask parity hrem`, or `write_case` in
relata_hrem::step_parity): the batches with augmentation and dropout off, the uniform numbers
of the distance-weighted draws, the vocabulary and each variant's configuration. For each
variant it builds the released modules from a checkout of CrossmodalGroup/HREM (imported
unchanged: EncoderImageAggr, GraphLoss with its AdjacencyModel and TripletLoss), a BiGRU text
encoder (authors_common.py: the release is BERT-only), AdamW with weight decay 1e-4 and
clip_grad_norm_ 2, and trains the case's steps with `torch.multinomial` replaced by an
inverse-CDF draw on the shared numbers (it raises on a row without weight, as torch does, so
the released code's `except` scores that direction zero). It writes into CASE/reference/:
<variant>_init.pth, <variant>_first.pth and <variant>_last.pth (weights under relata's names
before the first step, after it and after the last), <variant>_grads.pth (the first step's
gradients, before clipping), <variant>_links.npy (the connections of
every step, with relations on) and <variant>.json (every loss term of
every step, the draws consumed, the middle of each drawn share, the directions scored zero).

    python crates/hrem/examples/authors_steps.py CASE_DIR AUTHORS_CHECKOUT [threads=2] [out=reference]

threads: torch's CPU threads (another count sums in another order: run twice to see how far the
released code drifts from itself); out: the folder under CASE_DIR the outputs go to.

Needs torch and numpy (CI's venv: torch 2.9.0; 2.11 on the GPU machines gives the same).
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from authors_common import bigru_text, import_authors, relata_state  # noqa: E402

if len(sys.argv) < 3:
    sys.exit(__doc__)
case_dir, authors = sys.argv[1:3]
try:
    kv = dict(a.split("=", 1) for a in sys.argv[3:])
except ValueError:
    sys.exit(f"arguments after AUTHORS_CHECKOUT are key=value, got {sys.argv[3:]}")
graph_lib, encoders = import_authors(authors)
import lib.loss as authors_loss  # noqa: E402

warnings.filterwarnings("ignore", message="enable_nested_tensor")
torch.set_num_threads(int(kv.get("threads", 2)))
torch.use_deterministic_algorithms(True)
with open(os.path.join(case_dir, "case.json")) as f:
    case = json.load(f)
with open(os.path.join(case_dir, "vocab.json")) as f:
    vocab_size = len(json.load(f))
arrays = {n: np.load(os.path.join(case_dir, f"{n}.npy"))
          for n in ("regions", "region_lengths", "ids", "word_lengths", "images", "uniforms")}
out_dir = os.path.join(case_dir, kv.get("out", "reference"))
os.makedirs(out_dir, exist_ok=True)


class Draws:
    """torch.multinomial(weight, 1) on the case's uniform numbers: for each row in order, the
    column whose share of the row's sum holds u·sum (zero weights never drawn; the last column
    with a weight when rounding runs past the end), as relata's sampler. Each draw also records
    the middle of the drawn column's share (as a fraction of the row's sum): relata replays
    those, so that a draw whose number lies within float noise of a share's edge cannot go the
    other way in the other implementation."""

    def __init__(self):
        self.pool, self.used, self.dropped, self.middles = None, 0, 0, []

    def __call__(self, weight, num_samples, *args, **kwargs):
        assert num_samples == 1
        w = weight.detach().double().cpu().numpy()
        sums = w.sum(axis=1)
        if not np.all(np.isfinite(sums)) or np.any(sums <= 0):
            self.dropped += 1
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        picks = []
        for row, total in zip(w, sums):
            x = float(self.pool[self.used]) * total
            self.used += 1
            pick, before, start = None, 0.0, 0.0
            for c, v in enumerate(row):
                if v > 0:
                    pick, start = c, before
                    if x < v:
                        break
                x -= v
                before += v
            self.middles.append((start + row[pick] / 2) / total)
            picks.append(pick)
        return torch.tensor(picks, dtype=torch.long).unsqueeze(1)


draws = Draws()
authors_loss.torch.multinomial = draws


def options(config):
    e, r = config["encoder"], config["relation"]
    neg = config["negatives"]
    if e["ff"] != e["embed"]:
        sys.exit(f"encoder.ff = {e['ff']}: the released layers have ff = embed = {e['embed']}")
    if neg.get("kind") not in ("distance_weighted", "distance_weighted_released") or neg["n"] != 512:
        sys.exit(f"negatives {neg}: the released TripletLoss is distance-weighted with n = 512")
    if r["sigma"] != 1.0 or r["interaction"] != "fusion" or "word_dim" not in e["text"]:
        sys.exit("the released code has σ = 1, Fusion and (here) the BiGRU text encoder")
    return argparse.Namespace(
        dataset="coco" if neg["cutoff"] == 1.9 else "f30k", embed_size=e["embed"],
        nhead=e["heads"], dropout=e["dropout"], margin=config["margin"], base_loss="trip",
        gnn_loss="trip", warmup=config["warmup_iterations"] if config["relations"] else 10**12,
        residual_weight=e["beta"], num_layers_enc=1, graph_lr_factor=1.0,
        mask_weight=r["lambda"], threshold=r["threshold"], topk=r["top_k"],
        reg_loss_weight=config["reg_weight"], norm_input=1, cross_loss=1, mask_repeat=1,
        max_violation=False, img_dim=e["region_dim"], no_imgnorm=False, no_txtnorm=False,
    )


def run(variant, config):
    opt = options(config)
    torch.manual_seed(case["seed"])
    e = config["encoder"]
    img_enc = encoders.EncoderImageAggr(opt, opt.img_dim, opt.embed_size)
    txt_enc = bigru_text(encoders, opt, vocab_size, e["text"]["word_dim"], opt.embed_size)
    criterion = graph_lib.GraphLoss(opt)
    modules = (txt_enc, img_enc, criterion)
    relation = criterion if config["relations"] else None

    def save(tag):
        torch.save(relata_state(img_enc, txt_enc, relation), os.path.join(out_dir, f"{variant}_{tag}.pth"))

    save("init")
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(
        [{"params": m.parameters(), "lr": config["lr"]} for m in modules],
        lr=config["lr"], weight_decay=config["weight_decay"],
    )
    # Each term as the released GraphLoss adds it up.
    terms = {}

    def recorded(name, forward, weight=1.0):
        def call(*args, **kwargs):
            out = forward(*args, **kwargs)
            value = out[2] if isinstance(out, tuple) else out
            value = value.detach() if torch.is_tensor(value) else value
            terms[name] = terms.get(name, 0.0) + weight * float(value)
            return out
        return call

    criterion.base_loss.forward = recorded("tri", criterion.base_loss.forward)
    criterion.gnn_loss.forward = recorded("cross", criterion.gnn_loss.forward)
    criterion.adj_model.forward = recorded("reg", criterion.adj_model.forward, opt.reg_loss_weight)
    # The connections of every step (i2i, t2t, i2t, t2i), which relata replays: a score within
    # float noise of a row's k-th largest may fall on either side of it in two implementations.
    links = np.zeros((case["steps"], 4, case["batch"], case["batch"]), dtype=bool)
    adjacency = criterion.adj_model.forward

    def recorded_links(*args, **kwargs):
        out = adjacency(*args, **kwargs)
        for j, key in enumerate(("i2i", "t2t", "i2t", "t2i")):
            links[step_now[0], j] = out[0][key].detach().cpu().numpy()
        return out

    criterion.adj_model.forward = recorded_links
    step_now = [0]
    log = {"losses": [], "draws": [], "dropped": [], "middles": []}
    steps = case["steps"]
    for step in range(steps):
        step_now[0] = step
        wr, ww = case["widths"][step]
        regions = torch.from_numpy(arrays["regions"][step, :, :wr]).float()
        region_lengths = torch.from_numpy(arrays["region_lengths"][step])
        # At least top-k columns: the released fragment scores read max(len, k) word slots.
        ids = torch.zeros(len(regions), max(ww, opt.topk), dtype=torch.long)
        ids[:, :ww] = torch.from_numpy(arrays["ids"][step, :, :ww])
        lengths = torch.from_numpy(arrays["word_lengths"][step])
        images = torch.from_numpy(arrays["images"][step])
        draws.pool, draws.used, draws.dropped, draws.middles = arrays["uniforms"][step], 0, 0, []
        terms.clear()
        v = img_enc(regions, region_lengths, graph=True)
        u = txt_enc(ids, lengths, graph=True)
        optimizer.zero_grad()
        loss = criterion(v, u, img_ids=images)
        loss.backward()
        if step == 0:
            torch.save(relata_state(img_enc, txt_enc, relation, grads=True),
                       os.path.join(out_dir, f"{variant}_grads.pth"))
        nn.utils.clip_grad_norm_(params, config["clip"])
        optimizer.step()
        log["losses"].append({**terms, "total": float(loss.detach())})
        log["draws"].append(draws.used)
        log["middles"].append([float(m) for m in draws.middles])
        log["dropped"].append(draws.dropped)
        if step == 0:
            save("first")
        if step + 1 == steps:
            save("last")
    with open(os.path.join(out_dir, f"{variant}.json"), "w") as f:
        json.dump(log, f)
    if config["relations"]:
        np.save(os.path.join(out_dir, f"{variant}_links.npy"), links)
    print(f"{variant}: {steps} steps, loss {log['losses'][0]['total']:.4f} → "
          f"{log['losses'][-1]['total']:.4f}, directions scored zero: {sum(log['dropped'])}")


for name, variant_config in case["variants"].items():
    run(name, variant_config)
