"""M3DT = Prompt-DT backbone + one mixture of experts per layer (paper.md §1).

Every block computes  h = x + Attn(LN1 x);  y = LN2 h;  out = y + FFN(y) + MoE(y)
(the authors' M3DT block, `ffn_residual="normed"`, which `from_backbone` switches to from
the backbone's GPT-2 block `out = h + FFN(y)`; see `Block`), where MoE(y) depends on
the routing:

- "router": Σ_e g_e(y) · expert_e(y), g = the layer's router (dense softmax, or noisy
  top-k); stage 3 and inference;
- "single": expert `expert` alone with weight 1 (an int; or a (B,) long tensor, one
  expert per sample); stage 2;
- "grouped": the batch is E equal groups, group e goes to expert e: stage 2 for all E
  experts in one process (use `grouped_loss` and `clip_grad_norm_per_expert` so that each
  expert gets exactly the update it would get trained alone);
- "none": no MoE, the backbone alone.

Three-stage training in terms of the parameter groups:
1. backbone: train a `PromptDT` (GPT-2 blocks, `ffn_residual="stream"`);
2. experts: `M3DT.from_backbone(backbone, MoEConfig(n_experts=...))`,
   `set_trainable(backbone=False, experts=True, routers=False)`, routing "single" with
   expert i on group i's batches. Training one expert of a stacked bank with AdamW would
   still weight-decay the other slices; so either train expert i in its own process with a
   one-expert model (`MoEConfig(n_experts=1)`, expert 0) and copy it into the E-expert
   model with `load_expert_state(i, small.expert_state(0))`, or train all experts at once
   with routing "grouped";
3. routers: `set_trainable(backbone=False, experts=False, routers=True)`, routing "router".

`mask_expert_grads(keep)` zeroes the gradient slices of the other experts, for a process
that must update only some experts of a bank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from m3dt.models.moe import MoE, MoEConfig
from m3dt.models.prompt_dt import FfnResidual, PromptDT, PromptDTConfig, Segment, masked_action_loss

ROUTINGS = ("router", "single", "grouped", "none")


class M3DT(nn.Module):
    """Prompt-DT with an `MoE` (E experts + router) added to every block."""

    def __init__(self, cfg: PromptDTConfig, moe: MoEConfig):
        super().__init__()
        self.cfg, self.moe_cfg = cfg, moe
        self.backbone = PromptDT(cfg)
        self.moes = nn.ModuleList([MoE(moe, cfg.width, cfg.ffn_mult, cfg.dropout) for _ in range(cfg.n_layer)])
        self.routing: str = "router"
        self.expert: int | Tensor | None = None

    @classmethod
    def from_backbone(cls, backbone: PromptDT, moe: MoEConfig, ffn_residual: FfnResidual | None = "normed") -> M3DT:
        """A new M3DT holding a copy of `backbone`'s weights, with fresh experts and routers.

        `ffn_residual` is the block form of the M3DT: "normed" (default) is the authors' M3DT
        block `y = LN2 h; out = y + FFN(y) + MoE(y)`, which on a "stream" (GPT-2) backbone is
        their switch from the stage-1 block; "stream" keeps `out = h + FFN(y) + MoE(y)`;
        None keeps the backbone's form.
        """
        cfg = backbone.cfg if ffn_residual is None else replace(backbone.cfg, ffn_residual=ffn_residual)
        p = next(backbone.parameters())
        model = cls(cfg, moe).to(device=p.device, dtype=p.dtype)
        model.backbone.load_state_dict(backbone.state_dict())
        return model

    @property
    def n_experts(self) -> int:
        return self.moe_cfg.n_experts

    def set_routing(self, routing: str, expert: int | Tensor | None = None) -> None:
        """Default routing (and expert, for "single") of later forward calls."""
        self._check_routing(routing, expert)
        self.routing, self.expert = routing, expert

    def _check_routing(self, routing: str, expert: int | Tensor | None) -> None:
        assert routing in ROUTINGS, f"unknown routing {routing!r}, one of {ROUTINGS}"
        if routing == "single":
            assert expert is not None, 'routing "single" needs an expert index'
            if not isinstance(expert, Tensor):
                assert 0 <= int(expert) < self.n_experts, f"expert {expert} not in [0, {self.n_experts})"

    def forward(
        self,
        seg: Segment,
        prompt: Segment | tuple | None = None,
        routing: str | None = None,
        expert: int | Tensor | None = None,
    ) -> Tensor:
        """Predicted actions (B, K, act_dim); `seg` and `prompt` as `PromptDT.forward`.

        `routing`/`expert` default to the ones set by `set_routing` ("router").
        """
        seg = Segment(*seg)  # a plain tuple in Segment order works too
        extras = self.decoder_parts(routing, expert)[1]
        x, allowed = self.backbone.embed(seg, prompt)
        for block, extra in zip(self.backbone.blocks, extras):
            x = block(x, allowed, extra)  # (B, T', C)
        return self.backbone.head(x, seg.timesteps.shape[1])

    def decoder_parts(
        self, routing: str | None = None, expert: int | Tensor | None = None
    ) -> tuple[PromptDT, list[Callable[[Tensor], Tensor] | None]]:
        """The backbone and each block's MoE term under `routing` (default: `set_routing`'s);
        what `forward` and `m3dt.models.inference` run."""
        if routing is None:
            routing = self.routing
            expert = self.expert if expert is None else expert
        self._check_routing(routing, expert)
        if routing == "none":
            return self.backbone, [None] * len(self.moes)
        return self.backbone, [lambda y, moe=moe: moe(y, routing, expert) for moe in self.moes]

    get_action = PromptDT.get_action
    loss = staticmethod(masked_action_loss)

    @staticmethod
    def grouped_loss(
        pred: Tensor, target_actions: Tensor, action_mask: Tensor, attn_mask: Tensor, n_groups: int
    ) -> Tensor:
        """Sum over the E equal batch groups of each group's masked MSE (routing "grouped").

        Expert e's gradient is then exactly that of its own group's loss, as if trained alone.
        """
        B = pred.shape[0]
        assert B % n_groups == 0, f"batch {B} not divisible into {n_groups} groups"
        am = action_mask.expand(B, -1) if action_mask.dim() == 1 else action_mask
        groups = zip(*(z.chunk(n_groups) for z in (pred, target_actions, am, attn_mask)))
        return sum(masked_action_loss(*g) for g in groups)

    # ---------------------------------------------------------------- parameter groups

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def expert_parameters(self) -> list[nn.Parameter]:
        """The stacked expert tensors of every layer (expert e = slice e of each)."""
        return [p for moe in self.moes for p in moe.experts.parameters()]

    def router_parameters(self) -> list[nn.Parameter]:
        return [p for moe in self.moes for p in moe.router.parameters()]

    def set_trainable(self, *, backbone: bool, experts: bool, routers: bool) -> list[nn.Parameter]:
        """Set requires_grad per group; return the trainable parameters."""
        for params, flag in (
            (self.backbone_parameters(), backbone),
            (self.expert_parameters(), experts),
            (self.router_parameters(), routers),
        ):
            for p in params:
                p.requires_grad_(flag)
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def mask_expert_grads(self, keep: int | Sequence[int]) -> None:
        """Zero the gradients of every expert except `keep` (in every layer)."""
        keep = [keep] if isinstance(keep, int) else list(keep)
        for p in self.expert_parameters():
            if p.grad is not None:
                mask = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
                mask[keep] = True
                p.grad[~mask] = 0

    @torch.no_grad()
    def clip_grad_norm_per_expert(self, max_norm: float) -> Tensor:
        """Clip each expert's gradient (slice e over all layers) to `max_norm`; return the (E,) norms."""
        params = [p for p in self.expert_parameters() if p.grad is not None]
        sq = sum(p.grad.float().square().flatten(1).sum(1) for p in params)  # (E,)
        norms = sq.sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (E,)
        for p in params:
            p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)).to(p.grad.dtype))
        return norms

    def expert_state(self, e: int) -> dict[str, Tensor]:
        """Expert e's weights in every layer (copies), keyed like `state_dict`."""
        return {
            f"moes.{l}.experts.{n}": p[e].detach().clone()
            for l, moe in enumerate(self.moes)
            for n, p in moe.experts.named_parameters()
        }

    @torch.no_grad()
    def load_expert_state(self, e: int, state: dict[str, Tensor]) -> None:
        """Copy `state` (from `expert_state`) into expert slot e."""
        for l, moe in enumerate(self.moes):
            for n, p in moe.experts.named_parameters():
                p[e].copy_(state[f"moes.{l}.experts.{n}"])

    # ---------------------------------------------------------------- bookkeeping

    def num_params(self, authors_convention: bool = False) -> int:
        """Number of parameters (see `PromptDT.num_params` for `authors_convention`)."""
        return self.backbone.num_params(authors_convention) + sum(p.numel() for p in self.moes.parameters())

    def conflict_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups of the per-module gradient-conflict analysis (paper Fig. 12)."""
        g = self.backbone.conflict_groups()
        return {
            "embeddings": g["embeddings"],
            "attention": g["attention"],
            "mlp": g["mlp"],
            "experts": self.expert_parameters(),
            "routers": self.router_parameters(),
            "other": g["other"],
        }

