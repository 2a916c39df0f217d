"""The tutorial's text classifiers (§3.4, §3.5, §4.4, §4.5) and a Transformer, on ragged input.

All three models take the same ragged (CSR) batch, so one data path feeds them all and the data
side never pads::

    ids = torch.tensor([3, 5, 9,   7,   4, 4, 8, 2])   # three sequences, concatenated
    offsets = torch.tensor([0, 3, 4, 8])               # sequence i is ids[offsets[i]:offsets[i+1]]
    model = BagClassifier(vocab_size=10_000, num_classes=4, bigram_buckets=100_000)
    logits = model(ids, offsets)                        # (3, 4)

Token id 0 is padding (the tokenizer never emits it for a real token), id 1 is unknown. Empty
sequences are allowed everywhere: a bag of nothing is the zero vector; the LSTM and the
Transformer see an empty sequence as a single pad token.

Shape legend::

    B   sequences in the batch          T   padded length (longest kept sequence)
    N   total tokens in the batch        G   total hashed bigrams in the batch
    D   embedding / model width          H   hidden width of the dense head
    C   classes

    ids_N        LongTensor (N,)     token ids of all sequences, concatenated
    offsets_B1   LongTensor (B+1,)   offsets[0] = 0, offsets[-1] = N, non-decreasing
    padded_BT    LongTensor (B, T)   ids, right-padded with pad_id
    lengths_B    LongTensor (B,)     kept length of each sequence (≤ max_len)
    logits_BC    Tensor (B, C)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dlhpc.errors import ConfigError

PAD_ID = 0
UNK_ID = 1
BIGRAM_PRIME = 1_000_003  # fastText's multiplier for hashing a pair of ids

__all__ = [
    "BIGRAM_PRIME",
    "PADDED_LSTM_MAX_WORK",
    "PAD_ID",
    "UNK_ID",
    "BagClassifier",
    "LSTMClassifier",
    "TransformerClassifier",
    "hashed_bigrams",
    "ragged_lengths",
    "ragged_to_padded",
]


# --------------------------------------------------------------------------- ragged helpers


def ragged_lengths(offsets_B1: torch.Tensor) -> torch.Tensor:
    """Length of each sequence, (B,)."""
    return offsets_B1[1:] - offsets_B1[:-1]


def ragged_to_padded(
    ids_N: torch.Tensor,
    offsets_B1: torch.Tensor,
    pad_id: int = PAD_ID,
    max_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR batch → ``(padded_BT, lengths_B)``, keeping the first ``max_len`` tokens of each.

    ``T`` is the longest kept length (0 when every sequence is empty). Vectorized index
    arithmetic: position ``t`` of row ``b`` reads ``ids[offsets[b] + t]`` where ``t < lengths[b]``.
    Syncs once (``T`` is a host integer, it sizes the output).
    """
    lengths_B = ragged_lengths(offsets_B1)
    if max_len is not None:
        if max_len < 1:
            raise ConfigError(f"max_len must be at least 1, got {max_len}")
        lengths_B = lengths_B.clamp(max=max_len)
    B = lengths_B.numel()
    T = int(lengths_B.max()) if B > 0 else 0  # sync: the output's size
    if T == 0:
        return ids_N.new_full((B, 0), pad_id), lengths_B
    pos_BT = torch.arange(T, device=ids_N.device).expand(B, T)
    valid_BT = pos_BT < lengths_B[:, None]
    # Out-of-sequence positions are clamped to a legal index and then masked out.
    src_BT = (offsets_B1[:-1, None] + pos_BT).clamp(max=ids_N.numel() - 1)
    padded_BT = torch.where(valid_BT, ids_N[src_BT], ids_N.new_full((), pad_id))
    return padded_BT, lengths_B


def hashed_bigrams(
    ids_N: torch.Tensor, offsets_B1: torch.Tensor, buckets: int, base: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """fastText's hashed word bigrams: ``(bigram_ids_G, bigram_offsets_B1)``, in CSR form.

    Each adjacent pair ``(a, b)`` inside one sequence becomes
    ``base + (a * 1_000_003 + b) % buckets``; a sequence of length L gives max(L-1, 0) bigrams,
    in order. Vectorized: a pair (t, t+1) is kept unless t+1 starts a sequence. Syncs once
    (boolean selection).
    """
    if buckets < 1:
        raise ConfigError(f"bigram buckets must be at least 1, got {buckets}")
    counts_B = (ragged_lengths(offsets_B1) - 1).clamp(min=0)
    bigram_offsets_B1 = torch.zeros_like(offsets_B1)
    torch.cumsum(counts_B, 0, out=bigram_offsets_B1[1:])
    N = ids_N.numel()
    if N < 2:
        return ids_N.new_empty((0,)), bigram_offsets_B1
    # starts[p] is True where position p begins a sequence (p ≥ 1; empty sequences repeat p).
    starts_N = torch.zeros(N + 1, dtype=torch.bool, device=ids_N.device)
    starts_N[offsets_B1[1:-1]] = True
    keep = ~starts_N[1:N]  # pair (t, t+1) for t in [0, N-1)
    a, b = ids_N[:-1][keep].long(), ids_N[1:][keep].long()  # int64: a * prime must not wrap
    bigram_ids = base + torch.remainder(a * BIGRAM_PRIME + b, buckets)
    return bigram_ids, bigram_offsets_B1


def _padded_for_model(
    ids_N: torch.Tensor, offsets_B1: torch.Tensor, max_len: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad for a sequence model; an empty sequence becomes one pad token (length 1, T ≥ 1)."""
    padded_BT, lengths_B = ragged_to_padded(ids_N, offsets_B1, PAD_ID, max_len)
    if padded_BT.shape[1] == 0:
        padded_BT = padded_BT.new_full((padded_BT.shape[0], 1), PAD_ID)
    return padded_BT, lengths_B.clamp(min=1)


def _no_rows(head: nn.Linear) -> torch.Tensor:
    """Logits for an empty batch (B = 0): packing and attention refuse zero-size input."""
    return head.weight.new_zeros((0, head.out_features))


def _check_common(vocab_size: int, num_classes: int) -> None:
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    if vocab_size < 2:
        raise ConfigError(f"the vocabulary needs at least 2 ids (pad, unknown), got {vocab_size}")


# --------------------------------------------------------------------------- bag (fastText-like)


class BagClassifier(nn.Module):
    """Embedding + average pooling → Dense(hidden, relu) → Dense(C), on ``nn.EmbeddingBag``.

    With ``bigram_buckets > 0`` the hashed bigrams share the embedding table (rows
    ``vocab_size … vocab_size + buckets - 1``) and the average runs over unigrams and bigrams
    together. ``sparse=True`` gives the table sparse gradients (only touched rows): pair
    ``embedding_parameters()`` with ``torch.optim.SparseAdam`` and ``dense_parameters()`` with a
    dense optimizer, as the engine's ``build_optimizer`` does. Off by default: at the ``bag``
    recipe it trains 1.8 points less accurately than dense Adam, and fused dense Adam is faster
    still; it pays off for large bigram tables (``benchmarks/bag_sparse_cpu_20261128.md``).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 64,
        hidden: int = 64,
        bigram_buckets: int = 0,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        _check_common(vocab_size, num_classes)
        if bigram_buckets < 0:
            raise ConfigError(f"bigram buckets must be 0 (off) or more, got {bigram_buckets}")
        self.vocab_size = vocab_size
        self.bigram_buckets = bigram_buckets
        # One table for unigrams and bigrams; sum mode and our own count give the mean over both.
        self.embedding = nn.EmbeddingBag(
            vocab_size + bigram_buckets,
            embed_dim,
            mode="sum",
            include_last_offset=True,
            padding_idx=None,
            sparse=sparse,
        )
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.act = nn.ReLU()

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embedding.parameters())

    def dense_parameters(self) -> list[nn.Parameter]:
        return [*self.fc1.parameters(), *self.fc2.parameters()]

    def _with_bigrams(
        self, ids_N: torch.Tensor, offsets_B1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge unigrams and bigrams into one CSR batch: sequence i = its tokens, then its bigrams.

        Index arithmetic: unigram p of sequence i lands at p + bigram_offsets[i]; bigram q at
        offsets[i+1] + q. One EmbeddingBag call then gives one (sparse) gradient.
        """
        bi_G, bi_offsets_B1 = hashed_bigrams(
            ids_N, offsets_B1, self.bigram_buckets, self.vocab_size
        )
        B = offsets_B1.numel() - 1
        rows = torch.arange(B, device=ids_N.device)
        seq_of_uni = rows.repeat_interleave(ragged_lengths(offsets_B1), output_size=ids_N.numel())
        seq_of_bi = rows.repeat_interleave(ragged_lengths(bi_offsets_B1), output_size=bi_G.numel())
        merged = ids_N.new_empty(ids_N.numel() + bi_G.numel())
        uni_pos = torch.arange(ids_N.numel(), device=ids_N.device)
        bi_pos = torch.arange(bi_G.numel(), device=ids_N.device)
        merged[uni_pos + bi_offsets_B1[seq_of_uni]] = ids_N
        merged[bi_pos + offsets_B1[1:][seq_of_bi]] = bi_G
        return merged, offsets_B1 + bi_offsets_B1

    def forward(self, ids_N: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
        if self.bigram_buckets > 0:
            ids_N, offsets_B1 = self._with_bigrams(ids_N, offsets_B1)
        sum_BD = self.embedding(ids_N, offsets_B1)
        count_B1 = ragged_lengths(offsets_B1).clamp(min=1).unsqueeze(1).to(sum_BD.dtype)
        mean_BD = sum_BD / count_B1  # an empty bag is 0 / 1 = the zero vector
        return self.fc2(self.act(self.fc1(mean_BD)))  # (B, C)


# --------------------------------------------------------------------------- LSTM


# The LSTM runs on the padded batch when that is at most this many times the real tokens'
# work, else on a packed sequence. PyTorch's packed LSTM on the CPU steps through time in its
# own loop; the padded batch goes to oneDNN's fused LSTM, 2.3-2.5x faster per step at batch 128
# and 30 tokens (fwd + bwd, 2 threads): with length-bucketed training batches (padding a few %)
# it wins outright; the 2x limit is where the padded work would roughly cancel that
# speed-up (an estimate from that measurement, not a separate one). CUDA always pads (cuDNN; packing
# would read the lengths back to the host every batch).
PADDED_LSTM_MAX_WORK = 2.0


class LSTMClassifier(nn.Module):
    """Embedding(V, D, padding_idx=0) → LSTM(units) → last state → Dense(hidden, relu) → Dense(C).

    Each sequence's state is the one after its own last real token: padding changes nothing.
    The LSTM runs on the padded batch or on a packed sequence, whichever is faster for the
    batch (``PADDED_LSTM_MAX_WORK``); both give the same values and gradients to rounding.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 64,
        units: int = 64,
        hidden: int = 64,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        _check_common(vocab_size, num_classes)
        if max_len is not None and max_len < 1:
            raise ConfigError(f"max_len must be at least 1, got {max_len}")
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, units, batch_first=True)
        self.fc1 = nn.Linear(units, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.act = nn.ReLU()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Keras' initialization, which trains this model markedly better than PyTorch's
        defaults (73.2% vs 66.7% on the stdlib-docstring corpus, benchmarks/text_cpu_*.md):
        embedding U(−0.05, 0.05), input kernels Glorot-uniform, recurrent kernels orthogonal,
        forget-gate bias 1, dense layers Glorot-uniform with zero bias."""
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        self.embedding.weight[PAD_ID].zero_()
        units = self.lstm.hidden_size
        p = dict(self.lstm.named_parameters())
        w_ih, w_hh = p["weight_ih_l0"], p["weight_hh_l0"]  # (4U, D), (4U, U)
        nn.init.xavier_uniform_(w_ih)  # Keras: one Glorot kernel of shape (D, 4U)
        for g in range(4):  # Keras: orthogonal per gate block of the recurrent kernel
            nn.init.orthogonal_(w_hh[g * units : (g + 1) * units])
        p["bias_ih_l0"].zero_()
        p["bias_hh_l0"].zero_()
        p["bias_ih_l0"][units : 2 * units] = 1.0  # gate order i, f, g, o: f → 1
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, ids_N: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
        if offsets_B1.numel() < 2:
            return _no_rows(self.fc2)
        padded_BT, lengths_B = _padded_for_model(ids_N, offsets_B1, self.max_len)
        x_BTD = self.embedding(padded_BT)
        B, T = padded_BT.shape
        if x_BTD.is_cuda or PADDED_LSTM_MAX_WORK * int(lengths_B.sum()) >= B * T:
            # The whole padded batch through the fused kernel (oneDNN on the CPU, cuDNN), then
            # each sequence's state at its last real token: steps after it never reach that
            # state, so values and gradients are the packed run's (to rounding).
            out_BTU, _ = self.lstm(x_BTD)
            last_BU = out_BTU[torch.arange(B, device=out_BTU.device), lengths_B - 1]
        else:
            # pack_padded_sequence wants the lengths on the CPU: a sync on GPU batches.
            packed = pack_padded_sequence(
                x_BTD, lengths_B.cpu(), batch_first=True, enforce_sorted=False
            )
            _, (h_n, _) = self.lstm(packed)  # h_n (1, B, units), back in input order
            last_BU = h_n[-1]
        return self.fc2(self.act(self.fc1(last_BU)))  # (B, C)


# --------------------------------------------------------------------------- Transformer


class TransformerClassifier(nn.Module):
    """Token + learned position embeddings → pre-norm encoder → masked mean → LayerNorm → Dense.

    Padded positions are masked out of attention (``src_key_padding_mask``) and out of the
    pooling, so a sequence's logits do not depend on how much padding its batch needed.
    Sequences longer than ``max_len`` keep their first ``max_len`` tokens.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        ff: int = 128,
        dropout: float = 0.1,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        _check_common(vocab_size, num_classes)
        if d_model % heads != 0:
            raise ConfigError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        if max_len < 1 or layers < 1:
            raise ConfigError(f"max_len and layers must be at least 1, got {max_len}, {layers}")
        self.max_len = max_len
        self.tok_embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.pos_embedding = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # Nested tensors are not used with norm_first; saying so avoids the warning.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids_N: torch.Tensor, offsets_B1: torch.Tensor) -> torch.Tensor:
        if offsets_B1.numel() < 2:
            return _no_rows(self.head)
        padded_BT, lengths_B = _padded_for_model(ids_N, offsets_B1, self.max_len)
        T = padded_BT.shape[1]
        pos_T = torch.arange(T, device=padded_BT.device)
        x_BTD = self.dropout(self.tok_embedding(padded_BT) + self.pos_embedding(pos_T))
        pad_BT = pos_T[None, :] >= lengths_B[:, None]  # True = padding, ignored as a key
        h_BTD = self.encoder(x_BTD, src_key_padding_mask=pad_BT)
        real_BT1 = (~pad_BT).unsqueeze(2).to(h_BTD.dtype)
        mean_BD = (h_BTD * real_BT1).sum(1) / lengths_B[:, None].to(h_BTD.dtype)  # lengths ≥ 1
        return self.head(self.norm(mean_BD))  # (B, C)
