"""Export-friendly forwards of the text models: same weights, same logits, no host syncs.

The eager text models size tensors from data (``int(lengths.max())``), pack sequences and
select with boolean masks; a traced export would freeze those sizes into the graph. The
graphs here compute every size as a tensor, so the ONNX graph keeps a dynamic batch and a
dynamic token count, and they hold the eager model's own modules (no copied weights)::

    graph = export_graph(model)             # nn.Module: (ids_T, offsets_B1) → logits_BC
    torch.allclose(graph(ids, offsets), model(ids, offsets), atol=1e-5)   # the tests check it

Image models (``InputNorm`` + body) export as they are: the uint8 → float standardization is
their first layer, so it is inside the graph.

Shape legend::

    B   records in the batch      T   tokens in the batch (all records, concatenated)
    L   padded length (longest kept record, at least 1)      D   embedding width
    ids_T  int64 (T,)   offsets_B1  int64 (B+1,)   padded_BL int64 (B, L)   logits_BC (B, C)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.registry import ImageClassifier
from dlhpc.models.text import (
    BIGRAM_PRIME,
    PAD_ID,
    BagClassifier,
    LSTMClassifier,
    TransformerClassifier,
)


def padded(
    ids_T: torch.Tensor, offsets_B1: torch.Tensor, max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(padded_BL, lengths_B, pos_L)``: the first ``max_len`` tokens of each record.

    An empty record is one pad token (length 1), as in the eager models. ``L`` comes from a
    tensor (``lengths.max()``), so it stays dynamic in the exported graph.
    """
    raw_B = offsets_B1[1:] - offsets_B1[:-1]
    lengths_B = raw_B.clamp(min=1, max=max_len)
    # A 0-dim tensor (not an int) as the end keeps L symbolic in the traced graph.
    pos_L = torch.arange(lengths_B.max())  # type: ignore[call-overload]
    valid_BL = pos_L[None, :] < raw_B[:, None]
    ids_pad = torch.cat([ids_T, ids_T.new_full((1,), PAD_ID)])  # last slot: a pad token
    src_BL = offsets_B1[:-1, None] + pos_L[None, :]
    src_BL = torch.where(valid_BL, src_BL, torch.full_like(src_BL, ids_T.shape[0]))
    return ids_pad[src_BL], lengths_B, pos_L


def record_of_token(ids_T: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
    """Which record each token belongs to, (T,): a cumulative count of record starts."""
    starts_T1 = torch.cat([torch.zeros_like(ids_T), ids_T.new_zeros(1)])  # T+1 slots
    inner = offsets_B1[1:-1]  # where records 1 … B-1 start (repeated for empty records)
    starts_T1 = starts_T1.scatter_add(0, inner, torch.ones_like(inner))
    return torch.cumsum(starts_T1, 0)[: ids_T.shape[0]]


class BagGraph(nn.Module):
    """``BagClassifier``: gather rows, add each into its record's row, divide by the count.

    ``index_add`` exports as ScatterND(reduction="add"), row by row (see ``onnx_export``):
    exact, and far faster in ONNX Runtime than an element-wise ScatterElements or a CumSum.
    """

    def __init__(self, model: BagClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids_T: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
        m = self.model
        W_VD = m.embedding.weight
        rec_T = record_of_token(ids_T, offsets_B1)
        sum_BD = W_VD.new_zeros((offsets_B1.shape[0] - 1, W_VD.shape[1]))
        sum_BD = sum_BD.index_add(0, rec_T, W_VD[ids_T])
        count_B = offsets_B1[1:] - offsets_B1[:-1]
        if m.bigram_buckets > 0:
            # Pair t is (ids[t], ids[t+1]); a pair that straddles two records weighs 0.
            same_T1 = (rec_T[:-1] == rec_T[1:]).to(W_VD.dtype)[:, None]
            a, b = ids_T[:-1], ids_T[1:]
            bigram = m.vocab_size + torch.remainder(a * BIGRAM_PRIME + b, m.bigram_buckets)
            sum_BD = sum_BD.index_add(0, rec_T[:-1], W_VD[bigram] * same_T1)
            count_B = count_B + (count_B - 1).clamp(min=0)
        mean_BD = sum_BD / count_B.clamp(min=1)[:, None].to(W_VD.dtype)
        return m.fc2(m.act(m.fc1(mean_BD)))


class LSTMGraph(nn.Module):
    """``LSTMClassifier``: the LSTM over the padded batch, read at each record's last token.

    The LSTM is causal, so its output at position ``length-1`` is the packed ``h_n``; padding
    after a record's end is computed and ignored (ONNX's LSTM has no packing).
    """

    def __init__(self, model: LSTMClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids_T: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
        m = self.model
        max_len = m.max_len if m.max_len is not None else 2**31 - 1
        padded_BL, lengths_B, _ = padded(ids_T, offsets_B1, max_len)
        out_BLH, _ = m.lstm(m.embedding(padded_BL))
        rows_B = torch.arange(offsets_B1.shape[0] - 1)
        last_BH = out_BLH[rows_B, lengths_B - 1]
        return m.fc2(m.act(m.fc1(last_BH)))


def _attention(
    mha: nn.MultiheadAttention, x_BLD: torch.Tensor, pad_BL: torch.Tensor
) -> torch.Tensor:
    """Self-attention with a key padding mask, written out (no fused fast path to export)."""
    H = mha.num_heads
    dh = mha.embed_dim // H
    qkv = F.linear(x_BLD, mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = (
        t.reshape(t.shape[0], -1, H, dh).transpose(1, 2) for t in qkv.chunk(3, dim=-1)
    )  # B H L dh
    scores_BHLL = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
    scores_BHLL = scores_BHLL.masked_fill(pad_BL[:, None, None, :], float("-inf"))
    out_BHLd = torch.softmax(scores_BHLL, dim=-1) @ v
    return mha.out_proj(out_BHLd.transpose(1, 2).flatten(2))


class TransformerGraph(nn.Module):
    """``TransformerClassifier``: the pre-norm encoder layers, one by one, in eval mode."""

    def __init__(self, model: TransformerClassifier) -> None:
        super().__init__()
        self.model = model
        for layer in model.encoder.layers:
            if not layer.norm_first:
                raise ConfigError("only pre-norm encoder layers can be exported")

    def forward(self, ids_T: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
        m = self.model
        padded_BL, lengths_B, pos_L = padded(ids_T, offsets_B1, m.max_len)
        x_BLD = m.tok_embedding(padded_BL) + m.pos_embedding(pos_L)
        pad_BL = pos_L[None, :] >= lengths_B[:, None]  # True = padding, ignored as a key
        for layer in m.encoder.layers:
            x_BLD = x_BLD + _attention(layer.self_attn, layer.norm1(x_BLD), pad_BL)
            h_BLF = layer.activation(layer.linear1(layer.norm2(x_BLD)))
            x_BLD = x_BLD + layer.linear2(h_BLF)
        if m.encoder.norm is not None:
            x_BLD = m.encoder.norm(x_BLD)
        real_BL1 = (~pad_BL).unsqueeze(2).to(x_BLD.dtype)
        mean_BD = (x_BLD * real_BL1).sum(1) / lengths_B[:, None].to(x_BLD.dtype)
        return m.head(m.norm(mean_BD))


ADAPTERS: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {
    ImageClassifier: lambda m: m,
    BagClassifier: lambda m: BagGraph(m),  # type: ignore[arg-type]
    LSTMClassifier: lambda m: LSTMGraph(m),  # type: ignore[arg-type]
    TransformerClassifier: lambda m: TransformerGraph(m),  # type: ignore[arg-type]
}


def export_graph(model: nn.Module) -> nn.Module:
    """The module to trace for ``model``, in eval mode; new architectures register above."""
    adapter = ADAPTERS.get(type(model))
    if adapter is None:
        raise ConfigError(f"no ONNX export for {type(model).__name__}")
    return adapter(model).eval()
