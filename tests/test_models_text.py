"""Text classifiers on ragged (CSR) input: helpers against naive loops, models against references.

Shapes: ``ids`` (N,) concatenated token ids, ``offsets`` (B+1,), logits (B, C).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.text import (
    BIGRAM_PRIME,
    BagClassifier,
    LSTMClassifier,
    TransformerClassifier,
    hashed_bigrams,
    ragged_to_padded,
)

Seqs = list[list[int]]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread is faster than several fighting over a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def to_csr(seqs: Seqs) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
    offsets = torch.tensor([0, *torch.tensor([len(s) for s in seqs]).cumsum(0).tolist()])
    return ids, offsets.long()


def random_seqs(seed: int, batch: int = 9, longest: int = 12, vocab: int = 50) -> Seqs:
    """Random ragged batch; about a quarter of the sequences are empty."""
    g = torch.Generator().manual_seed(seed)
    seqs: Seqs = []
    for _ in range(batch):
        n = (
            0
            if torch.rand(1, generator=g).item() < 0.25
            else int(torch.randint(1, longest, (1,), generator=g))
        )
        seqs.append(torch.randint(2, vocab, (n,), generator=g).tolist())
    return seqs


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("max_len", [None, 1, 4])
def test_ragged_to_padded_matches_a_loop(seed: int, max_len: int | None) -> None:
    seqs = random_seqs(seed)
    padded, lengths = ragged_to_padded(*to_csr(seqs), pad_id=0, max_len=max_len)
    kept = [s[:max_len] if max_len is not None else s for s in seqs]
    width = max(len(s) for s in kept)
    want = torch.tensor([s + [0] * (width - len(s)) for s in kept], dtype=torch.long)
    assert torch.equal(padded, want)
    assert lengths.tolist() == [len(s) for s in kept]


def test_ragged_to_padded_edge_cases() -> None:
    padded, lengths = ragged_to_padded(*to_csr([[], [], []]))
    assert padded.shape == (3, 0) and lengths.tolist() == [0, 0, 0]
    padded, _ = ragged_to_padded(*to_csr([[4], []]), pad_id=7)
    assert padded.tolist() == [[4], [7]]
    with pytest.raises(ConfigError, match="max_len"):
        ragged_to_padded(*to_csr([[4]]), max_len=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hashed_bigrams_match_a_loop(seed: int) -> None:
    seqs = [*random_seqs(seed), [9], []]
    buckets, base = 97, 50
    got, got_offsets = hashed_bigrams(*to_csr(seqs), buckets=buckets, base=base)
    want: Seqs = [
        [base + (a * BIGRAM_PRIME + b) % buckets for a, b in itertools.pairwise(s)] for s in seqs
    ]
    assert got.tolist() == [x for s in want for x in s]
    assert torch.equal(got_offsets, to_csr(want)[1])
    got, got_offsets = hashed_bigrams(*to_csr([[], [3]]), buckets=5, base=10)
    assert got.numel() == 0 and got_offsets.tolist() == [0, 0, 0]


# --------------------------------------------------------------------------- bag


def naive_bag(model: BagClassifier, seqs: Seqs, with_bigrams: bool) -> torch.Tensor:
    w = model.embedding.weight
    rows = []
    for s in seqs:
        feats = list(s)
        if with_bigrams:
            feats += [
                model.vocab_size + (a * BIGRAM_PRIME + b) % model.bigram_buckets
                for a, b in itertools.pairwise(s)
            ]
        rows.append(w[feats].mean(0) if feats else torch.zeros(w.shape[1]))
    return model.fc2(torch.relu(model.fc1(torch.stack(rows))))


@pytest.mark.parametrize("buckets", [0, 31])
def test_bag_equals_the_naive_mean_of_embedding_rows(buckets: int) -> None:
    torch.manual_seed(0)
    model = BagClassifier(50, 3, embed_dim=8, hidden=6, bigram_buckets=buckets)
    seqs = [*random_seqs(5), []]
    got = model(*to_csr(seqs))
    assert got.shape == (len(seqs), 3)
    torch.testing.assert_close(got, naive_bag(model, seqs, buckets > 0), atol=1e-6, rtol=1e-6)


def test_bag_gradients_flow_and_sparse_gives_a_sparse_grad() -> None:
    torch.manual_seed(0)
    dense = BagClassifier(50, 3, bigram_buckets=11)
    dense(*to_csr(random_seqs(1))).sum().backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dense.parameters())
    sparse = BagClassifier(50, 3, bigram_buckets=11, sparse=True)
    sparse(*to_csr([[2, 3, 4], [], [5]])).sum().backward()  # type: ignore[no-untyped-call]
    grad = sparse.embedding.weight.grad
    assert grad is not None and grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    assert {2, 3, 4, 5} <= touched and len(touched) == 6  # 4 unigrams + 2 bigram rows
    assert set(sparse.embedding_parameters()) == {sparse.embedding.weight}
    assert len(sparse.dense_parameters()) == 4


def test_bag_has_the_keras_parameter_count() -> None:
    for n in (2, 10):
        model = BagClassifier(10_000, n)
        want = 10_000 * 64 + (64 * 64 + 64) + (64 * n + n)
        assert sum(p.numel() for p in model.parameters()) == want


# --------------------------------------------------------------------------- LSTM


def test_lstm_batch_equals_each_sequence_alone_and_a_manual_lstm() -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(50, 4, embed_dim=8, units=6, hidden=5).eval()
    seqs = [s for s in random_seqs(2, batch=8) if s]
    batch = model(*to_csr(seqs))
    for i, s in enumerate(seqs):
        alone = model(*to_csr([s]))
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=1e-5)
        out, _ = model.lstm(model.embedding(torch.tensor([s])))  # (1, L, units), no padding
        manual = model.fc2(torch.relu(model.fc1(out[:, -1])))
        torch.testing.assert_close(batch[i : i + 1], manual, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_len", [None, 4])
def test_lstm_padded_and_packed_runs_agree_in_values_and_gradients(
    max_len: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The padded batch (oneDNN's fused LSTM) and the packed sequence give the same logits and
    gradients, whatever the padding, with empty and truncated sequences in the batch."""
    import dlhpc.models.text as text

    seqs = [*random_seqs(3, batch=9), [], [7] * 12]
    ids, offsets = to_csr(seqs)
    results = []
    for work in (float("inf"), 0.0):  # always padded, always packed
        monkeypatch.setattr(text, "PADDED_LSTM_MAX_WORK", work)
        torch.manual_seed(0)
        model = LSTMClassifier(50, 4, embed_dim=8, units=6, hidden=5, max_len=max_len)
        logits = model(ids, offsets)
        logits.square().sum().backward()  # type: ignore[no-untyped-call]
        results.append((logits.detach(), {k: p.grad for k, p in model.named_parameters()}))
    (padded, g_padded), (packed, g_packed) = results
    torch.testing.assert_close(padded, packed, atol=1e-6, rtol=1e-5)
    for k, g in g_packed.items():
        assert g is not None and g.abs().sum() > 0, k
        torch.testing.assert_close(g_padded[k], g, atol=1e-5, rtol=1e-4, msg=k)


def test_lstm_truncates_and_handles_empty_sequences() -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(50, 3, embed_dim=8, units=6, hidden=5, max_len=3).eval()
    got = model(*to_csr([[5, 6, 7, 8, 9], [], [4]]))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[0:1], model(*to_csr([[5, 6, 7]])), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got[1:2], model(*to_csr([[0]])), atol=1e-6, rtol=1e-6)
    assert torch.isfinite(model(*to_csr([[], []]))).all()


def test_lstm_has_the_keras_parameter_count_plus_a_second_bias() -> None:
    # Keras: Embedding 640,000 + LSTM(64) 4*(64*64 + 64*64 + 64) = 33,024 + Dense(64) 4,160
    #        + Dense(n) 65n. PyTorch's LSTM keeps two bias vectors (b_ih and b_hh) where Keras
    #        keeps one, so it has 4*64 = 256 more parameters: 33,280. The function is the same.
    for n in (2, 10):
        model = LSTMClassifier(10_000, n)
        keras = 640_000 + 33_024 + 4_160 + 65 * n
        assert sum(p.numel() for p in model.parameters()) == keras + 256
        assert sum(p.numel() for p in model.lstm.parameters()) == 33_280


# --------------------------------------------------------------------------- Transformer


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad-fast-path"])
def test_transformer_logits_do_not_depend_on_padding(grad: bool) -> None:
    # Under no_grad in eval mode PyTorch takes the fused encoder fast path: check both paths.
    torch.manual_seed(0)
    model = TransformerClassifier(50, 3, d_model=16, heads=2, layers=2, ff=32).eval()
    short, longer = [3, 4, 5], list(range(2, 30))
    with torch.set_grad_enabled(grad):
        alone = model(*to_csr([short]))
        with_sibling = model(*to_csr([short, longer, []]))
        longer_alone = model(*to_csr([longer]))
        empty = model(*to_csr([[]]))
    torch.testing.assert_close(with_sibling[0:1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_sibling[1:2], longer_alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(with_sibling).all() and torch.isfinite(empty).all()


def test_transformer_truncates_to_max_len() -> None:
    torch.manual_seed(0)
    model = TransformerClassifier(50, 3, d_model=16, heads=2, layers=1, ff=32, max_len=5).eval()
    long = list(range(2, 40))
    torch.testing.assert_close(
        model(*to_csr([long, [7]]))[0:1], model(*to_csr([long[:5]])), atol=1e-5, rtol=1e-5
    )


def test_an_empty_batch_gives_no_rows() -> None:
    ids, offsets = torch.zeros(0, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    for model in (BagClassifier(20, 3, bigram_buckets=5), LSTMClassifier(20, 3)):
        assert model(ids, offsets).shape == (0, 3)
    assert TransformerClassifier(20, 3).eval()(ids, offsets).shape == (0, 3)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="2 classes"):
        BagClassifier(100, 1)
    with pytest.raises(ConfigError, match="buckets"):
        BagClassifier(100, 2, bigram_buckets=-1)
    with pytest.raises(ConfigError, match="multiple of heads"):
        TransformerClassifier(100, 2, d_model=10, heads=4)
    with pytest.raises(ConfigError, match="max_len"):
        LSTMClassifier(100, 2, max_len=0)


# --------------------------------------------------------------------------- training


def contains_five_task(n: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class 1 iff token 5 appears; lengths 0–10 over a 20-token vocabulary."""
    g = torch.Generator().manual_seed(0)
    seqs: Seqs = []
    labels = []
    for i in range(n):
        length = int(torch.randint(0, 11, (1,), generator=g))
        s = [t for t in torch.randint(2, 20, (length,), generator=g).tolist() if t != 5]
        if i % 2 and s:
            s[int(torch.randint(0, len(s), (1,), generator=g))] = 5
        seqs.append(s)
        labels.append(int(5 in s))
    return *to_csr(seqs), torch.tensor(labels)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BagClassifier(20, 2, embed_dim=16, hidden=16),
        lambda: BagClassifier(20, 2, embed_dim=16, hidden=16, bigram_buckets=64, sparse=True),
        lambda: LSTMClassifier(20, 2, embed_dim=16, units=16, hidden=16),
        lambda: TransformerClassifier(20, 2, d_model=16, heads=2, layers=1, ff=32, dropout=0.0),
    ],
    ids=["bag", "bag-bigrams-sparse", "lstm", "transformer"],
)
def test_each_model_learns_a_tiny_task(make: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    model = make()
    ids, offsets, y = contains_five_task()
    if isinstance(model, BagClassifier) and model.embedding.sparse:
        opts: list[torch.optim.Optimizer] = [
            torch.optim.SparseAdam(model.embedding_parameters(), lr=3e-2),
            torch.optim.Adam(model.dense_parameters(), lr=3e-2),
        ]
    else:
        opts = [torch.optim.Adam(model.parameters(), lr=1e-2)]
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(ids, offsets), y)
        for o in opts:
            o.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        for o in opts:
            o.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0], losses


def test_lstm_starts_from_keras_initialization() -> None:
    m = LSTMClassifier(100, 3, units=8)
    p = dict(m.lstm.named_parameters())
    assert torch.all(p["bias_ih_l0"][8:16] == 1.0) and torch.all(p["bias_hh_l0"] == 0)
    assert torch.all(p["bias_ih_l0"][:8] == 0) and torch.all(p["bias_ih_l0"][16:] == 0)
    for g in range(4):  # each gate's recurrent block is orthogonal
        blk = p["weight_hh_l0"][g * 8 : (g + 1) * 8]
        torch.testing.assert_close(blk @ blk.T, torch.eye(8), atol=1e-5, rtol=0)
    emb = m.embedding.weight
    assert emb.abs().max() <= 0.05 and torch.all(emb[0] == 0)  # padding row stays zero
