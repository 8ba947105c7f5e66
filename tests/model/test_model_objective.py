"""Training objective: the chunked full-softmax cross-entropy equals the plain one (values and
gradients), and an epoch's batches hold every user once, grouped by length or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.batches import Batch, training_batches
from model.losses import full_softmax_ce


def plain_ce(h: torch.Tensor, items: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = h @ items.T
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, y)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_equals_plain_in_value_and_gradients(chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    h0 = torch.randn(37, 16, generator=gen, dtype=torch.float64)
    w0 = torch.randn(301, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(1, 301, (37,), generator=gen)
    y[:5] = y[0]  # repeated targets: their gradients must add up

    grads = []
    for fn in (plain_ce, lambda h, w, t: full_softmax_ce(h, w, t, chunk=chunk)):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        loss = fn(h, w, y)
        (loss * 3.0).backward()  # an upstream gradient other than 1
        grads.append((loss.detach(), h.grad, w.grad))

    (loss_a, gh_a, gw_a), (loss_b, gh_b, gw_b) = grads
    torch.testing.assert_close(loss_b, loss_a)
    torch.testing.assert_close(gh_b, gh_a)
    torch.testing.assert_close(gw_b, gw_a)


def test_padding_is_never_a_class() -> None:
    h = torch.ones(2, 4)
    items = torch.zeros(3, 4)
    items[0] = 100.0  # padding would dominate the softmax if it were a class
    y = torch.tensor([1, 2])
    loss = full_softmax_ce(h.requires_grad_(), items.requires_grad_(), y)
    torch.testing.assert_close(loss, torch.tensor(torch.log(torch.tensor(2.0)).item()))
    loss.backward()
    assert torch.all(items.grad[0] == 0)



def epoch_sequences(batches: list[Batch]) -> list[tuple[int, ...]]:
    """Each row's sequence, put back together from its inputs and its last target."""
    return sorted(tuple(inp[inp != 0]) + (int(tgt[-1]),)
                  for b in batches for inp, tgt in zip(b.inputs, b.targets, strict=True))


def test_an_epoch_holds_every_user_once_in_either_batching() -> None:
    seqs = [1000 * u + np.arange(1, 2 + u % 13) for u in range(300)]  # lengths 1..13
    expected = sorted(tuple(int(i) for i in s[-9:]) for s in seqs if len(s) >= 2)  # max_len 8
    widths = {}
    for by_length in (True, False):
        rng = np.random.default_rng(0)
        batches = list(training_batches(seqs, None, 8, 4, 16, rng, by_length=by_length))
        assert epoch_sequences(batches) == expected
        assert all(len(b.inputs) <= 16 for b in batches)
        widths[by_length] = np.mean([b.inputs.shape[1] for b in batches])
    assert widths[True] < widths[False]  # grouping by length pads less
