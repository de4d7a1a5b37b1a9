"""Evaluation forward that computes only what the action uses (exact, tested against `get_action`).

`get_action` (the straightforward form) runs the whole model on prompt + input at every
environment step and keeps one action. Two facts make most of that work redundant:

- the prompt's tokens precede the input and attention is causal, so the prompt's hidden
  states, and hence its keys and values in every layer, do not depend on the input:
  `prompt_cache` computes them once per episode batch (with the batch-1 prompt, as the
  rollout passes it) and `act` attends to them as a prefix;
- only the state token of the last timestep gives the action: in the last block `act`
  computes keys and values of every token but the attention, FFN (and MoE) output only for
  that token, and the final LayerNorm and action head only on it.

A history shorter than K is fed unpadded (left padding is masked out of every real query's
attention, so it changes nothing), but at least `MIN_STEPS` timesteps, and the last block
computes the last `QUERY_TOKENS` tokens: every matmul then has >= 4 rows per sample. CPU
BLAS takes another kernel for matmuls of fewer than 4 rows, whose rounding differs, and a
sample's action would then depend on the batch size (episodes leave the batch as they end);
with >= 4 rows each row's result is the same in any batch, as with the full forward
(tested). Works for any model with `decoder_parts()` -> (PromptDT
backbone, the extra FFN-side term of each block): `PromptDT`, `MTDT`, `M3DT` (either block
form, `PromptDTConfig.ffn_residual`). Results equal `get_action` to fp32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from m3dt.models.prompt_dt import PromptDT, Segment, attention_mask


MIN_STEPS = 4  # input timesteps fed at least (left-padded; K if smaller): the embeddings' matmuls have >= 4 rows
QUERY_TOKENS = 8  # tokens computed by the last block (the state token of the last step among them)


class Decoder(Protocol):
    def decoder_parts(self) -> tuple[PromptDT, list[Any]]: ...


@dataclass(frozen=True)
class PromptCache:
    """Keys and values of the prompt tokens in every layer, for `act`."""

    kv: tuple[tuple[Tensor, Tensor], ...]  # per layer: keys, values (Bp, nh, 3Kp, hs)
    keys: Tensor  # (Bp, 3Kp) bool: real (unpadded) prompt tokens


@torch.no_grad()
def prompt_cache(model: Decoder, prompt: Segment | tuple | None) -> PromptCache | None:
    """The prompt's per-layer keys and values (None without a prompt). Batch Bp of the
    prompt (1 in evaluation) is kept: `act` broadcasts it over the input batch."""
    if prompt is None:
        return None
    dt, extras = model.decoder_parts()
    assert not dt.training, "prompt_cache is for evaluation (dropout off): call model.eval() first"
    assert dt.cfg.use_prompt, "this model has no prompt embeddings (use_prompt=False)"
    pr = Segment(*prompt)
    dt._check(pr, "prompt")
    x = dt.drop(dt.prompt_embed(pr))  # (Bp, 3Kp, C); no embed_ln, as `PromptDT.embed`
    keys = pr.attn_mask.bool().repeat_interleave(3, dim=1)  # (Bp, 3Kp)
    allowed = attention_mask(keys)  # (Bp, 1, 3Kp, 3Kp)
    kv = []
    last = len(dt.blocks) - 1
    for i, (block, extra) in enumerate(zip(dt.blocks, extras)):
        kv.append(block.attn.qkv(block.ln_1(x))[1:])  # 2 x (Bp, nh, 3Kp, hs)
        if i < last:  # the last block's prompt outputs are never used
            x = block(x, allowed, extra)  # (Bp, 3Kp, C)
    return PromptCache(tuple(kv), keys)


@torch.no_grad()
def act(model: Decoder, states: Tensor, actions: Tensor, rtg: Tensor, timesteps: Tensor,
        cache: PromptCache | None) -> Tensor:
    """The action for the last step of each history: (B, act_dim), as `get_action`.

    Histories (B, t, ...) of any length t >= 1 (cut to the last K = context_len steps);
    `cache` from `prompt_cache` (None: no prompt).
    """
    dt, extras = model.decoder_parts()
    assert not dt.training, "act is for evaluation (dropout off): call model.eval() first"
    K = dt.cfg.context_len
    states, actions, rtg, timesteps = (z[:, -K:] for z in (states, actions, rtg, timesteps))
    B, t = timesteps.shape
    t_min = min(MIN_STEPS, K)
    mask = torch.ones(B, max(t, t_min), dtype=torch.long, device=states.device)
    if t < t_min:  # left padding, masked out as in `get_action`
        pad = t_min - t
        mask[:, :pad] = 0
        states, actions, rtg = (F.pad(z, (0, 0, pad, 0)) for z in (states, actions, rtg))
        timesteps, t = F.pad(timesteps, (pad, 0)), t_min
    seg = Segment(states, actions, rtg, timesteps.long(), mask)
    dt._check(seg, "input")
    x = dt.drop(dt.embed_ln(dt.input_embed(seg)))  # (B, 3t, C)
    keys = mask.bool().repeat_interleave(3, dim=1)  # (B, 3t)
    if cache is not None:
        assert len(cache.kv) == len(dt.blocks), f"cache of {len(cache.kv)} layers for {len(dt.blocks)} blocks"
        Bp = cache.keys.shape[0]
        assert Bp in (1, B), f"prompt cache batch {Bp} must be 1 or the input batch {B}"
        keys = torch.cat((cache.keys.expand(B, -1), keys), dim=1)  # (B, Tp + 3t)
    Tp = keys.shape[1] - 3 * t
    allowed = attention_mask(keys)[:, :, Tp:]  # (B, 1, 3t, Tp + 3t): the input tokens' rows
    q = slice(max(0, 3 * t - QUERY_TOKENS), 3 * t)  # the last (up to) QUERY_TOKENS tokens
    last = len(dt.blocks) - 1
    for i, (block, extra) in enumerate(zip(dt.blocks, extras)):
        prefix = cache.kv[i] if cache is not None else None
        if i < last:
            x = block(x, allowed, extra, prefix)  # (B, 3t, C)
        else:
            x = block(x, allowed[:, :, q], extra, prefix, query=q)  # (B, Q, C)
    return dt.action_head(x)[:, -2]  # (B, act_dim): the last timestep's state token (R, s, a order)
