"""Full-softmax cross-entropy over a large catalogue, computed in item chunks.

The plain form materialises a (P, N + 1) logit matrix and its gradient: about 220 MB per batch
for 1,000 positions over 55k items, so a CPU step is bound by memory traffic. Here the logits of
one chunk of items at a time are formed, reduced to a log-sum-exp, and formed again in the
backward pass; memory is O(P * chunk) and the work stays in cache. Index 0 (padding) is never a
class. The result and its gradients equal ``F.cross_entropy`` up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, items: Tensor, y: Tensor, chunk: int) -> Tensor:
        """h: (P, D), items: (N + 1, D), y: (P,) int64 in 1..N -> mean loss, a scalar."""
        lse = torch.full((h.shape[0],), float("-inf"), dtype=h.dtype, device=h.device)
        for start in range(0, items.shape[0], chunk):
            logits = h @ items[start : start + chunk].T  # (P, C)
            if start == 0:
                logits[:, 0] = float("-inf")
            lse = torch.logaddexp(lse, torch.logsumexp(logits, 1))
        target = (h * items[y]).sum(1)  # (P,)
        ctx.save_for_backward(h, items, y, lse)
        ctx.chunk = chunk
        return (lse - target).mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, items, y, lse = ctx.saved_tensors
        scale = grad / h.shape[0]
        grad_h = torch.zeros_like(h)
        grad_items = torch.empty_like(items)
        for start in range(0, items.shape[0], ctx.chunk):
            rows = items[start : start + ctx.chunk]
            p = torch.exp((h @ rows.T).sub_(lse[:, None])).mul_(scale)  # (P, C) softmax * scale
            if start == 0:
                p[:, 0] = 0.0
            grad_h.addmm_(p, rows)
            torch.mm(p.T, h, out=grad_items[start : start + ctx.chunk])
        grad_h.sub_(items[y] * scale)
        grad_items.index_add_(0, y, h * -scale)
        return grad_h, grad_items, None, None


def full_softmax_ce(h: Tensor, items: Tensor, y: Tensor, chunk: int = 512) -> Tensor:
    """Mean cross-entropy of targets ``y`` over all items but index 0: (P, D), (N + 1, D), (P,)."""
    return _ChunkedSoftmaxCE.apply(h, items, y, chunk)
