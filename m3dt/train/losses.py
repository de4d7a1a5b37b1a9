"""The training losses: masked action MSE, per model and per stage-2 expert group."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from m3dt.data.sampler import Batch
from m3dt.models import M3DT, Segment, masked_action_loss


def _device_of(model: nn.Module):
    return next(model.parameters()).device


def action_loss(model: nn.Module, batch: Batch) -> Tensor:
    """The training loss of every model here: masked action MSE (prompt if the model uses one)."""
    b = batch.to(_device_of(model))
    use_prompt = getattr(getattr(model, "cfg", None), "use_prompt", True)
    pred = model(Segment(*b.inputs), prompt=b.prompt if use_prompt else None)  # (B, K, 8)
    return masked_action_loss(pred, b.actions, b.action_mask, b.attn_mask)


def grouped_loss(n_experts: int) -> Callable[[M3DT, Batch], Tensor]:
    """Stage 2 with all experts in one model: the sum of the per-group losses (batch slice
    e is group e's), so each expert's gradient is its own group's."""

    def loss_fn(m: M3DT, batch: Batch) -> Tensor:
        b = batch.to(_device_of(m))
        pred = m(Segment(*b.inputs), prompt=b.prompt, routing="grouped")  # (B, K, 8)
        return M3DT.grouped_loss(pred, b.actions, b.action_mask, b.attn_mask, n_experts)

    return loss_fn
