"""Prompt-DT backbone, MoE layer and routers, M3DT."""

from m3dt.models.m3dt import M3DT, ROUTINGS
from m3dt.models.moe import MODES, DenseRouter, ExpertBank, MoE, MoEConfig, NoisyTopKRouter, router_mlp
from m3dt.models.prompt_dt import (
    MLP,
    MTDT,
    PAPER_PARAMS,
    WIDTH_PRESETS,
    Block,
    CausalSelfAttention,
    PromptDT,
    PromptDTConfig,
    Segment,
    TokenEmbedding,
    attention_mask,
    masked_action_loss,
    optim_groups,
)

__all__ = [
    "M3DT",
    "ROUTINGS",
    "MODES",
    "DenseRouter",
    "ExpertBank",
    "MoE",
    "MoEConfig",
    "NoisyTopKRouter",
    "router_mlp",
    "MLP",
    "MTDT",
    "PAPER_PARAMS",
    "WIDTH_PRESETS",
    "Block",
    "CausalSelfAttention",
    "PromptDT",
    "PromptDTConfig",
    "Segment",
    "TokenEmbedding",
    "attention_mask",
    "masked_action_loss",
    "optim_groups",
]
