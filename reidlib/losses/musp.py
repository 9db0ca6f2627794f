"""MUSP's attention diversity ("production") loss, eq. (14) (Lee, Woo, Lee, Sec. 4.3)."""
from __future__ import annotations

import torch

__all__ = ["attention_product_loss"]


def attention_product_loss(attn: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """``L_div = sum_{i=1}^{K} sum_{x} prod_{k=1}^{n-1} a_k^i(x)``, MUSP eq. (14).

    Args:
        attn: ``[B, K, h, w]``: the kept part attention weights of each image (the ``K = n-1``
            foreground maps left after the softmax over all ``n`` maps, background discarded).
            Eq. (14)'s ``a_1^i . a_2^i ... a_{n-1}^i`` is their element-wise product at every
            location; the text: "the summation of space-wise production of attention weights".
        reduction: how the per-image sums over locations are combined over the batch.
            ``"sum"`` (default) follows the paper text, ``sum_{i=1}^{K}`` over the K images of the
            mini-batch (eq. 14's K is the batch size, as in eq. 12); ``"mean"`` divides by the
            batch size, which makes the weight independent of it. ``"none"`` returns ``[B]``.

    Note: with ``reduction="sum"`` the value scales with batch size and ``h*w``; MUSP's eq. (11)
    adds it with weight 1.
    """
    if attn.dim() != 4:
        raise ValueError(f"attn must be [B, K, h, w], got {tuple(attn.shape)}")
    per_image = attn.prod(dim=1).sum(dim=(1, 2))          # [B]
    if reduction == "sum":
        return per_image.sum()
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
