"""What authors_reference.py and authors_steps.py share: importing the authors' released HREM
code from a checkout the user gives (nothing of it is copied here), the BiGRU text encoder the
released code lacks, and the map from the released modules' parameters to relata's names.
"""
import os
import sys
import types

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def import_authors(authors):
    """Puts a checkout of CrossmodalGroup/HREM on the path and returns its modules
    (graph_lib, lib.encoders). Only the image encoder is used from lib.encoders, which imports
    BertModel at the top; on a machine without CUDA the authors' `.cuda()` calls stay on the
    CPU."""
    if not os.path.isfile(os.path.join(authors, "graph_lib.py")):
        sys.exit(f"{authors}: no graph_lib.py; give a checkout of CrossmodalGroup/HREM")
    sys.modules.setdefault("transformers", types.SimpleNamespace(BertModel=None))
    sys.path.insert(0, authors)
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        nn.Module.cuda = lambda self, *a, **k: self
    import graph_lib
    import lib.encoders as encoders

    return graph_lib, encoders


def bigru_text(encoders, opt, vocab_size, word_dim, embed):
    """Embedding → packed BiGRU → mean of the directions, then the authors' EncoderText_BERT
    pooling (top-2 mean, one Transformer layer with ff = embed, average, β-mix, l2norm)."""

    class BiGruText(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, word_dim)
            self.rnn = nn.GRU(word_dim, embed, 1, batch_first=True, bidirectional=True)
            layer = nn.TransformerEncoderLayer(
                d_model=embed, nhead=opt.nhead, dim_feedforward=embed, dropout=opt.dropout
            )
            self.aggr = nn.TransformerEncoder(layer, num_layers=1, norm=None)
            self.graph_pool = encoders.Avg_Pooling_Variable()
            self.gpool = encoders.Maxk_Pooling_Variable()

        def forward(self, x, lengths, graph=False):
            packed = pack_padded_sequence(
                self.embed(x), lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=x.shape[1]
            )
            words = (out[:, :, :embed] + out[:, :, embed:]) / 2
            top, _ = self.gpool(words, lengths)
            mask = encoders.padding_mask(words, lengths)
            mixed = self.aggr(words.transpose(1, 0), src_key_padding_mask=mask).transpose(1, 0)
            mixed, _ = self.graph_pool(mixed, lengths)
            cap = opt.residual_weight * top + (1 - opt.residual_weight) * mixed
            if graph:
                return words, lengths, encoders.l2norm(cap, dim=-1), cap, words
            return encoders.l2norm(cap, dim=-1)

    return BiGruText()


def _layer(state, prefix, layer, get):
    """nn.TransformerEncoderLayer → relata's TransformerLayer (the stacked in-projection split
    into query, key and value)."""
    d = layer.self_attn.embed_dim
    w, b = get(layer.self_attn.in_proj_weight), get(layer.self_attn.in_proj_bias)
    for j, part in enumerate(("query", "key", "value")):
        state[f"{prefix}.attention.{part}.weight"] = w[j * d:(j + 1) * d]
        state[f"{prefix}.attention.{part}.bias"] = b[j * d:(j + 1) * d]
    state[f"{prefix}.attention.output.weight"] = get(layer.self_attn.out_proj.weight)
    state[f"{prefix}.attention.output.bias"] = get(layer.self_attn.out_proj.bias)
    for part in ("linear1", "linear2", "norm1", "norm2"):
        state[f"{prefix}.{part}.weight"] = get(getattr(layer, part).weight)
        state[f"{prefix}.{part}.bias"] = get(getattr(layer, part).bias)


def relata_state(img_enc, txt_enc, criterion=None, grads=False):
    """The released modules' parameters (and the batch norm's running statistics) under
    relata's names, in PyTorch's layout (relata's import transposes the linear weights). With
    `grads`, the parameters' gradients instead (zeros where there is none, and for the running
    statistics)."""
    if grads:
        def get(t):
            return t.grad if t.grad is not None else torch.zeros_like(t)
    else:
        def get(t):
            return t
    state = {}
    fc = img_enc.fc
    for name, module in (("fc", fc.fc), ("mlp1", fc.mlp.layers[0]), ("mlp2", fc.mlp.layers[1])):
        state[f"image.{name}.weight"] = get(module.weight)
        state[f"image.{name}.bias"] = get(module.bias)
    bn = fc.mlp.bns[0]
    for part in ("weight", "bias", "running_mean", "running_var"):
        state[f"image.mlp_bn.{part}"] = get(getattr(bn, part))
    _layer(state, "image.pool.layer", img_enc.aggr.layers[0], get)
    state["text.gru.embed.weight"] = get(txt_enc.embed.weight)
    for direction, suffix in (("forward_gru", ""), ("backward_gru", "_reverse")):
        for kind, short in (("input", "ih"), ("hidden", "hh")):
            rnn = txt_enc.rnn
            state[f"text.gru.{direction}.{kind}.weight"] = get(getattr(rnn, f"weight_{short}_l0{suffix}"))
            state[f"text.gru.{direction}.{kind}.bias"] = get(getattr(rnn, f"bias_{short}_l0{suffix}"))
    _layer(state, "text.pool.layer", txt_enc.aggr.layers[0], get)
    if criterion is not None:
        adj = criterion.adj_model.adj_learning
        for name, mlp in (("t2i", adj.mlp_t2i), ("i2t", adj.mlp_i2t)):
            state[f"relation.{name}.fc1.weight"] = get(mlp[0].weight)
            state[f"relation.{name}.fc1.bias"] = get(mlp[0].bias)
            state[f"relation.{name}.fc2.weight"] = get(mlp[3].weight)
            state[f"relation.{name}.fc2.bias"] = get(mlp[3].bias)
        _layer(state, "relation.layer", criterion.gnn.layers[0], get)
    return {k: v.detach().clone().contiguous() for k, v in state.items()}
