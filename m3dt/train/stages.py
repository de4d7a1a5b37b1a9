"""The three M3DT stages and every baseline, as configurations of the one loop (`loop.train`).

Each `run_*` function picks (model, trainable parameters, batch source, loss, checkpoint
state) and calls `loop.train`; nothing here has its own optimisation loop.

| run                 | model                         | trainable            | tasks          | routing  |
|---------------------|-------------------------------|----------------------|----------------|----------|
| `run_backbone`      | PromptDT (kind prompt_dt)     | all                  | all            | -        |
|   MTDT baseline     | MTDT (no prompt)              | all                  | all            | -        |
|   width scaling     | PromptDT at another width     | all                  | all            | -        |
| `run_expert`        | M3DT with 1 expert            | experts              | group i        | single 0 |
| `run_experts_grouped` | M3DT with E experts         | experts              | group e -> e   | grouped  |
| `assemble`          | M3DT: backbone + E experts    | -                    | -              | -        |
| `run_router`        | assembled M3DT                | routers (+experts)   | all            | router   |
|   top-k ablation    | moe.router = topk             | routers              | all            | router   |
|   unfrozen experts  | train_experts=True            | routers + experts    | all            | router   |
| `run_e2e_moe`       | M3DT from scratch             | all                  | all            | router   |
| `run_harmodt`       | HarmoDT (masks)               | all + mask hook      | all            | -        |

"No grouping" is stage 2 with every group = all tasks (`run_expert` without a groups file:
`all_tasks` are the tasks; the workflow's grouping "none").

The number of experts E is the number of groups in the groups file (stage 2, and assembly
checks every expert checkpoint against it); stage 3 takes it from the assembled checkpoint.
Every other MoE setting comes from `cfg.moe` (`TrainConfig.moe_with`).

Checkpoints follow `m3dt.checkpoint` (policy checkpoints, except stage 2's, which hold only
the expert's weights, `checkpoint.expert_meta`). Batch sources are in `m3dt.train.data`,
losses in `m3dt.train.losses`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from m3dt import checkpoint as ckpt
from m3dt.config import TrainConfig
from m3dt.groups import read_groups
from m3dt.models import M3DT, MTDT, PromptDT
from m3dt.seeding import set_seed
from m3dt.train.data import GroupedSource, data_files, load_sampler
from m3dt.train.loop import RunResult, train
from m3dt.train.losses import action_loss, grouped_loss

log = logging.getLogger("m3dt.train")


def _load_backbone(path: str | Path) -> tuple[PromptDT, dict]:
    model, meta = ckpt.load_model(path, kind="prompt_dt")
    return model, meta  # type: ignore[return-value]


def _m3dt_from_backbone(backbone: PromptDT, cfg: TrainConfig, n_experts: int) -> M3DT:
    return M3DT.from_backbone(backbone, cfg.moe_with(n_experts), ffn_residual=cfg.m3dt_block)


# --------------------------------------------------------------------------- stage 1 / dense baselines


def run_backbone(cfg: TrainConfig, tasks: Sequence[str], data_dir: str | Path, out_dir: str | Path,
                 kind: str = "prompt_dt") -> RunResult:
    """Stage 1 (kind prompt_dt), or the MTDT baseline (kind mtdt): the dense model on all tasks."""
    assert kind in ("prompt_dt", "mtdt"), f"backbone kind must be prompt_dt or mtdt, got {kind!r}"
    set_seed(cfg.loop.seed)
    sampler = load_sampler(data_dir, tasks, cfg)
    model = PromptDT(cfg.model) if kind == "prompt_dt" else MTDT(cfg.model)
    log.info("%s: %d tasks, %.2fM parameters", kind, len(sampler.tasks), model.num_params() / 1e6)
    meta = ckpt.run_meta("backbone" if kind == "prompt_dt" else "mtdt", cfg.as_dict(),
                         data_files(data_dir, sampler.tasks), spec=ckpt.spec_of(model), sampler=sampler)
    return train(model, model.parameters(), sampler, action_loss, cfg.loop, out_dir, meta=meta)


# --------------------------------------------------------------------------- stage 2


def run_expert(cfg: TrainConfig, backbone_ckpt: str | Path, groups_json: str | Path | None, expert: int,
               data_dir: str | Path, out_dir: str | Path, all_tasks: Sequence[str] | None = None) -> RunResult:
    """Stage 2 for expert `expert`: frozen backbone, one fresh expert, trained on its group only.

    The model is a one-expert M3DT (routing "single"), so AdamW touches exactly this
    expert; the checkpoint holds its weights under the one-expert keys (`assemble` puts
    them into slot `expert`). Without `groups_json`, the "no grouping" ablation: the expert
    trains on `all_tasks` (each expert with its own seed).
    """
    if groups_json is None:
        assert all_tasks, "run_expert needs groups_json or all_tasks (no grouping)"
        groups = [list(all_tasks)] * (expert + 1)
    else:
        groups = read_groups(groups_json)
    if not 0 <= expert < len(groups):
        raise ValueError(f"expert {expert} not in [0, {len(groups)}) of {groups_json}")
    set_seed(cfg.loop.seed * 1000 + expert)  # independent experts (matters for "no grouping")
    backbone, _ = _load_backbone(backbone_ckpt)
    model = _m3dt_from_backbone(backbone, cfg, 1)
    model.set_routing("single", 0)
    trainable = model.set_trainable(backbone=False, experts=True, routers=False)
    sampler = load_sampler(data_dir, groups[expert], cfg, seed_offset=1000 * (expert + 1))
    inputs = [*data_files(data_dir, sampler.tasks), backbone_ckpt, *([groups_json] if groups_json else [])]
    meta = {**ckpt.expert_meta(expert, sampler.tasks, len(groups), backbone_ckpt, groups_json),
            "train_config": cfg.as_dict(), "inputs": ckpt.fingerprint(inputs)}
    log.info("expert %d/%d on %d tasks: %s", expert, len(groups), len(sampler.tasks), sampler.tasks[:6])
    return train(model, trainable, sampler, action_loss, cfg.loop, out_dir, meta=meta,
                 state_fn=_expert_weights)


def _expert_weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".experts." in k}


def run_experts_grouped(cfg: TrainConfig, backbone_ckpt: str | Path, groups_json: str | Path,
                        data_dir: str | Path, out_dir: str | Path) -> RunResult:
    """Stage 2, all E experts in one process through the stacked expert weights.

    Each expert sees only its group's batches (routing "grouped": batch slice e goes to
    expert e), the loss is the sum of the per-group losses so each expert's gradient is its
    own group's, and gradients are clipped per expert: every expert gets the update it
    would get trained alone (up to random draws). The checkpoint is an assembled M3DT with
    fresh routers (ready for stage 3).
    """
    groups = read_groups(groups_json)
    E = len(groups)
    set_seed(cfg.loop.seed)
    backbone, bmeta = _load_backbone(backbone_ckpt)
    model = _m3dt_from_backbone(backbone, cfg, E)
    model.set_routing("grouped")
    trainable = model.set_trainable(backbone=False, experts=True, routers=False)
    samplers = [load_sampler(data_dir, g, cfg, seed_offset=1000 * (e + 1)) for e, g in enumerate(groups)]

    def clip() -> Tensor:
        return model.clip_grad_norm_per_expert(cfg.loop.optim.grad_clip).norm()

    inputs = [*(p for g in groups for p in data_files(data_dir, g)), backbone_ckpt, groups_json]
    meta = {**bmeta, **ckpt.run_meta("experts_grouped", cfg.as_dict(), inputs), "model_spec": ckpt.spec_of(model),
            "routing": "router", "groups": str(groups_json), "expert_tasks": groups, "backbone": str(backbone_ckpt)}
    return train(model, trainable, GroupedSource(samplers), grouped_loss(E), cfg.loop, out_dir, meta=meta,
                 clip_fn=clip)


def assemble(backbone_ckpt: str | Path, expert_ckpts: Sequence[str | Path], out: str | Path,
             cfg: TrainConfig, routers_ckpt: str | Path | None = None) -> Path:
    """One M3DT policy checkpoint from the stage-1 backbone, E stage-2 experts (in expert
    order) and, optionally, trained routers (a stage-3 checkpoint); routers are fresh
    otherwise (the input of stage 3). Experts trained from a groups file must be all of
    its groups (E = the file's number of groups)."""
    backbone, bmeta = _load_backbone(backbone_ckpt)
    E = len(expert_ckpts)
    assert E >= 1, "assemble needs at least one expert checkpoint"
    set_seed(cfg.loop.seed)
    model = _m3dt_from_backbone(backbone, cfg, E)
    groups = []
    for e, path in enumerate(expert_ckpts):
        state, m = ckpt.load_expert(path, e)
        if m.get("groups", "none") != "none" and m.get("n_groups") != E:
            raise ValueError(f"{path}: expert {e} of a {m.get('n_groups')}-group file ({m.get('groups')}), "
                             f"but {E} expert checkpoints were given")
        with torch.no_grad():
            model.load_expert_state(e, state)
        groups.append(m.get("expert_tasks"))
    if routers_ckpt is not None:
        ckpt.load_state(model, ckpt.router_state(routers_ckpt), str(routers_ckpt), missing_ok=True)
    meta = {**bmeta, "model_spec": ckpt.spec_of(model), "stage": "assembled", "routing": "router",
            "expert_tasks": groups, "backbone": str(backbone_ckpt), "experts": [str(p) for p in expert_ckpts]}
    ckpt.save_checkpoint(out, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                               "step": 0, "meta": meta})
    log.info("assembled %s: backbone + %d experts%s", out, E, " + routers" if routers_ckpt else "")
    return Path(out)


# --------------------------------------------------------------------------- stage 3 / MoE baselines


def run_router(cfg: TrainConfig, assembled_ckpt: str | Path, tasks: Sequence[str], data_dir: str | Path,
               out_dir: str | Path, train_experts: bool = False) -> RunResult:
    """Stage 3: backbone and experts frozen (experts trainable with `train_experts`, the
    ablation), routers (cfg.moe.router: dense | topk) trained on all tasks. The experts
    (and their number) are the assembled checkpoint's; every other MoE setting is cfg.moe's
    (the top-k ablation starts from the same experts with a different, fresh router)."""
    set_seed(cfg.loop.seed)
    n_experts = int(ckpt.read_meta(assembled_ckpt).get("model_spec", {}).get("moe", {}).get("n_experts", 0))
    if n_experts < 1:
        raise ValueError(f"{assembled_ckpt} is not an M3DT checkpoint (no model_spec.moe.n_experts)")
    model, meta = ckpt.load_model(assembled_ckpt, kind="m3dt", moe=dataclasses.asdict(cfg.moe_with(n_experts)))
    model.set_routing("router")
    trainable = model.set_trainable(backbone=False, experts=train_experts, routers=True)
    sampler = load_sampler(data_dir, tasks, cfg)
    meta = {**meta, **ckpt.run_meta("router", cfg.as_dict(), [*data_files(data_dir, sampler.tasks), assembled_ckpt],
                                     spec=ckpt.spec_of(model), sampler=sampler),
            "routing": "router", "train_experts": train_experts, "assembled": str(assembled_ckpt)}
    return train(model, trainable, sampler, action_loss, cfg.loop, out_dir, meta=meta)


def run_e2e_moe(cfg: TrainConfig, tasks: Sequence[str], data_dir: str | Path, out_dir: str | Path) -> RunResult:
    """Baseline: backbone, experts and routers from scratch, trained jointly (no stages)."""
    set_seed(cfg.loop.seed)
    model = M3DT(dataclasses.replace(cfg.model, ffn_residual=cfg.m3dt_block), cfg.moe)
    model.set_routing("router")
    sampler = load_sampler(data_dir, tasks, cfg)
    meta = ckpt.run_meta("e2e_moe", cfg.as_dict(), data_files(data_dir, sampler.tasks), spec=ckpt.spec_of(model),
                         sampler=sampler, routing="router")
    return train(model, model.parameters(), sampler, action_loss, cfg.loop, out_dir, meta=meta)


def run_harmodt(cfg: TrainConfig, tasks: Sequence[str], data_dir: str | Path, out_dir: str | Path) -> RunResult:
    """Baseline HarmoDT: Prompt-DT with per-task harmony masks updated by a loop hook."""
    from m3dt.train.harmodt import harmodt_parts

    set_seed(cfg.loop.seed)
    sampler = load_sampler(data_dir, tasks, cfg)
    hcfg = cfg.harmo
    model, trainable, loss_fn, hooks = harmodt_parts(cfg.model, hcfg, sampler.tasks, total_steps=cfg.loop.steps,
                                                     sample_batch=sampler.sample_task)
    spec = ckpt.model_spec("harmodt", cfg.model, harmo=hcfg) | {"tasks": sampler.tasks}
    meta = ckpt.run_meta("harmodt", cfg.as_dict(), data_files(data_dir, sampler.tasks), spec=spec, sampler=sampler)
    return train(model, trainable, sampler, loss_fn, cfg.loop, out_dir, meta=meta, hooks=hooks)


# --------------------------------------------------------------------------- the one dispatcher

# stage name -> what it needs besides cfg and out (the workflow's train rules and the CLI)
STAGES = {
    "backbone": ("tasks", "data_dir"),
    "prompt_dt": ("tasks", "data_dir"),
    "mtdt": ("tasks", "data_dir"),
    "harmodt": ("tasks", "data_dir"),
    "e2e_moe": ("tasks", "data_dir"),
    "expert": ("backbone", "expert", "data_dir"),  # groups, or tasks for "no grouping"
    "experts_grouped": ("backbone", "groups", "data_dir"),
    "assemble": ("backbone", "experts"),
    "router": ("assembled", "tasks", "data_dir"),
}


def run(stage: str, cfg: TrainConfig, out: str | Path, *, tasks: Sequence[str] | None = None,
        data_dir: str | Path | None = None, backbone: str | Path | None = None, groups: str | Path | None = None,
        expert: int | None = None, experts: Sequence[str | Path] | None = None,
        routers: str | Path | None = None, assembled: str | Path | None = None,
        train_experts: bool = False) -> RunResult | Path:
    """Run one stage or baseline by name: the run folder `out` (assemble: the checkpoint
    file `out`). Missing inputs fail naming them (`STAGES` lists what each stage needs)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}, one of {tuple(STAGES)}")
    given = {"tasks": tasks, "data_dir": data_dir, "backbone": backbone, "expert": expert, "groups": groups,
             "experts": experts, "assembled": assembled}
    missing = [k for k in STAGES[stage] if given[k] in (None, [], ())]
    if stage == "expert" and groups is None and not tasks:
        missing.append("tasks (or groups)")
    if missing:
        raise ValueError(f"stage {stage!r} needs {missing}")
    if stage in ("backbone", "prompt_dt", "mtdt"):
        return run_backbone(cfg, tasks, data_dir, out, kind="mtdt" if stage == "mtdt" else "prompt_dt")
    if stage == "harmodt":
        return run_harmodt(cfg, tasks, data_dir, out)
    if stage == "e2e_moe":
        return run_e2e_moe(cfg, tasks, data_dir, out)
    if stage == "expert":
        return run_expert(cfg, backbone, groups, int(expert), data_dir, out, all_tasks=tasks)
    if stage == "experts_grouped":
        return run_experts_grouped(cfg, backbone, groups, data_dir, out)
    if stage == "assemble":
        return assemble(backbone, list(experts), out, cfg, routers)
    return run_router(cfg, assembled, tasks, data_dir, out, train_experts)
