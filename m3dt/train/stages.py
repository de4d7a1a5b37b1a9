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

Checkpoints are the policy checkpoints of `m3dt.policy` (model_spec, tasks, stats, prompts
in `meta`), except stage 2's, which hold only the expert's weights (`expert_*` meta).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from m3dt import tasks as registry
from m3dt.config import TrainConfig
from m3dt.data.sampler import Batch, MultiTaskSampler
from m3dt.data.store import open_task_data
from m3dt.models import M3DT, MTDT, MoEConfig, PromptDT, masked_action_loss
from m3dt.policy import build_model, model_spec, policy_meta
from m3dt.seeding import set_seed
from m3dt.train.loop import RunResult, load_checkpoint, save_checkpoint, train

log = logging.getLogger("m3dt.train")


# --------------------------------------------------------------------------- data


def data_path(data_dir: str | Path, task: str) -> Path:
    """`<data_dir>/<task>.h5`, the store's file of a registry task."""
    return Path(data_dir) / f"{registry.get(task).name}.h5"


def load_sampler(data_dir: str | Path, tasks: Sequence[str], cfg: TrainConfig, seed_offset: int = 0) -> MultiTaskSampler:
    """A `MultiTaskSampler` over `tasks` (in that order) read from `data_dir/<task>.h5`."""
    names = registry.resolve(list(tasks))
    missing = [str(data_path(data_dir, t)) for t in names if not data_path(data_dir, t).is_file()]
    if missing:
        raise FileNotFoundError(f"no task data for {len(missing)} task(s): {missing[:5]}")
    datas = {t: open_task_data(data_path(data_dir, t)) for t in names}
    scfg = cfg.sampler
    if seed_offset:
        import dataclasses

        scfg = dataclasses.replace(scfg, seed=scfg.seed + seed_offset)
    try:
        return MultiTaskSampler(datas, scfg)
    finally:
        for d in datas.values():
            d.close()


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def action_loss(model: nn.Module, batch: Batch) -> Tensor:
    """The training loss of every model here: masked action MSE (prompt if the model uses one)."""
    b = batch.to(_device_of(model))
    use_prompt = getattr(getattr(model, "cfg", None), "use_prompt", True)
    pred = model(*b.inputs, prompt=b.prompt if use_prompt else None)  # (B, K, 8)
    return masked_action_loss(pred, b.actions, b.action_mask, b.attn_mask)


def batches_of(sampler: MultiTaskSampler):
    """`batches(task)` for the gradient analysis: an endless iterator of one-task batches."""

    def gen(task: str):
        while True:
            yield sampler.sample_task(task)

    return gen


# --------------------------------------------------------------------------- checkpoints


def fingerprint(paths: Sequence[str | Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of each input file: part of a run's identity (`loop.resume_key`)."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def _data_files(data_dir: str | Path, tasks: Sequence[str]) -> list[Path]:
    return [data_path(data_dir, t) for t in tasks]


def _meta(spec: Mapping[str, Any], sampler: MultiTaskSampler, cfg: TrainConfig, stage: str, data_dir: str | Path,
          inputs: Sequence[str | Path] = (), **extra: Any) -> dict:
    use_prompt = spec["kind"] != "mtdt"
    return {**policy_meta(spec, sampler, sampler.tasks, use_prompt), "stage": stage, "train_config": cfg.as_dict(),
            "inputs": fingerprint([*_data_files(data_dir, sampler.tasks), *inputs]), **extra}


def load_backbone(path: str | Path) -> tuple[PromptDT, dict[str, Any]]:
    """The stage-1 PromptDT of a backbone checkpoint, and the checkpoint's meta."""
    ck = load_checkpoint(path)
    meta = ck.get("meta", {})
    if meta.get("model_spec", {}).get("kind") != "prompt_dt":
        raise ValueError(f"{path} is not a Prompt-DT backbone checkpoint (model_spec.kind = "
                         f"{meta.get('model_spec', {}).get('kind')!r})")
    model = build_model(meta["model_spec"])
    model.load_state_dict(ck["model"])
    return model, meta


def _m3dt_from_backbone(backbone: PromptDT, moe: MoEConfig, cfg: TrainConfig) -> M3DT:
    return M3DT.from_backbone(backbone, moe, ffn_residual=cfg.m3dt_block)


def _spec_of(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, M3DT):
        return model_spec("m3dt", model.cfg, model.moe_cfg)
    return model_spec("mtdt" if isinstance(model, MTDT) else "prompt_dt", model.cfg)


# --------------------------------------------------------------------------- stage 1 / dense baselines


def run_backbone(cfg: TrainConfig, tasks: Sequence[str], data_dir: str | Path, out_dir: str | Path,
                 kind: str = "prompt_dt") -> RunResult:
    """Stage 1 (kind prompt_dt), or the MTDT baseline (kind mtdt): the dense model on all tasks."""
    assert kind in ("prompt_dt", "mtdt"), f"backbone kind must be prompt_dt or mtdt, got {kind!r}"
    set_seed(cfg.loop.seed)
    sampler = load_sampler(data_dir, tasks, cfg)
    model = PromptDT(cfg.model) if kind == "prompt_dt" else MTDT(cfg.model)
    spec = _spec_of(model)
    log.info("%s: %d tasks, %.2fM parameters", kind, len(sampler.tasks), model.num_params() / 1e6)
    return train(model, model.parameters(), sampler, action_loss, cfg.loop, out_dir,
                 meta=_meta(spec, sampler, cfg, "backbone" if kind == "prompt_dt" else "mtdt", data_dir))


# --------------------------------------------------------------------------- stage 2


def read_groups(groups_json: str | Path) -> list[list[str]]:
    from m3dt.analysis.grouping import read_groups_json

    return [list(g) for g in read_groups_json(groups_json)["groups"]]


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
    backbone, bmeta = load_backbone(backbone_ckpt)
    model = _m3dt_from_backbone(backbone, MoEConfig(**{**_moe_dict(cfg), "n_experts": 1}), cfg)
    model.set_routing("single", 0)
    trainable = model.set_trainable(backbone=False, experts=True, routers=False)
    sampler = load_sampler(data_dir, groups[expert], cfg, seed_offset=1000 * (expert + 1))
    meta = {"stage": "expert", "expert": expert, "expert_tasks": sampler.tasks, "n_groups": len(groups),
            "backbone": str(backbone_ckpt), "groups": str(groups_json) if groups_json else "none", "train_config": cfg.as_dict(),
            "inputs": fingerprint([*_data_files(data_dir, sampler.tasks), backbone_ckpt,
                                   *([groups_json] if groups_json else [])])}
    log.info("expert %d/%d on %d tasks: %s", expert, len(groups), len(sampler.tasks), sampler.tasks[:6])
    return train(model, trainable, sampler, action_loss, cfg.loop, out_dir, meta=meta,
                 state_fn=_expert_weights)


def _moe_dict(cfg: TrainConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg.moe)


def _expert_weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".experts." in k}


class GroupedSource:
    """Stage 2 for all experts at once: each step concatenates one batch of every group
    (group e's sampler, its own round robin), in expert order; routing "grouped"."""

    def __init__(self, samplers: Sequence[MultiTaskSampler]):
        self.samplers = list(samplers)

    def next(self, step: int) -> tuple[str, Batch]:
        parts = [s.next(step)[1] for s in self.samplers]
        fields = {f: torch.cat([getattr(p, f) for p in parts]) for f in Batch.__dataclass_fields__}
        return "grouped", Batch(**fields)

    def state_dict(self) -> dict[str, Any]:
        return {"samplers": [s.state_dict() for s in self.samplers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for s, st in zip(self.samplers, state["samplers"], strict=True):
            s.load_state_dict(st)


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
    backbone, bmeta = load_backbone(backbone_ckpt)
    model = _m3dt_from_backbone(backbone, MoEConfig(**{**_moe_dict(cfg), "n_experts": E}), cfg)
    model.set_routing("grouped")
    trainable = model.set_trainable(backbone=False, experts=True, routers=False)
    samplers = [load_sampler(data_dir, g, cfg, seed_offset=1000 * (e + 1)) for e, g in enumerate(groups)]

    def loss_fn(m: M3DT, batch: Batch) -> Tensor:
        b = batch.to(_device_of(m))
        pred = m(*b.inputs, prompt=b.prompt, routing="grouped")
        return M3DT.grouped_loss(pred, b.actions, b.action_mask, b.attn_mask, E)

    def clip() -> Tensor:
        return model.clip_grad_norm_per_expert(cfg.loop.optim.grad_clip).norm()

    meta = {**bmeta, "model_spec": _spec_of(model), "stage": "experts_grouped", "routing": "router",
            "groups": str(groups_json), "expert_tasks": groups, "backbone": str(backbone_ckpt),
            "train_config": cfg.as_dict(),
            "inputs": fingerprint([*(data_path(data_dir, t) for g in groups for t in g), backbone_ckpt, groups_json])}
    return train(model, trainable, GroupedSource(samplers), loss_fn, cfg.loop, out_dir, meta=meta, clip_fn=clip)


def assemble(backbone_ckpt: str | Path, expert_ckpts: Sequence[str | Path], out: str | Path,
             cfg: TrainConfig, routers_ckpt: str | Path | None = None) -> Path:
    """One M3DT policy checkpoint from the stage-1 backbone, E stage-2 experts (in expert
    order) and, optionally, trained routers (a stage-3 checkpoint); routers are fresh
    otherwise (the input of stage 3)."""
    backbone, bmeta = load_backbone(backbone_ckpt)
    E = len(expert_ckpts)
    assert E >= 1, "assemble needs at least one expert checkpoint"
    set_seed(cfg.loop.seed)
    model = _m3dt_from_backbone(backbone, MoEConfig(**{**_moe_dict(cfg), "n_experts": E}), cfg)
    groups = []
    for e, path in enumerate(expert_ckpts):
        ck = load_checkpoint(path)
        m = ck.get("meta", {})
        if m.get("stage") != "expert" or m.get("expert") != e:
            raise ValueError(f"{path}: expected the stage-2 checkpoint of expert {e}, found stage "
                             f"{m.get('stage')!r} expert {m.get('expert')!r}")
        state = {k: v[0] for k, v in ck["model"].items()}  # (1, ...) slices of a one-expert bank
        with torch.no_grad():
            model.load_expert_state(e, state)
        groups.append(m.get("expert_tasks"))
    if routers_ckpt is not None:
        ck = load_checkpoint(routers_ckpt)
        routers = {k: v for k, v in ck["model"].items() if ".router." in k}
        model.load_state_dict(routers, strict=False)
    meta = {**bmeta, "model_spec": _spec_of(model), "stage": "assembled", "routing": "router",
            "expert_tasks": groups, "backbone": str(backbone_ckpt), "experts": [str(p) for p in expert_ckpts]}
    save_checkpoint(Path(out), {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                "step": 0, "meta": meta})
    log.info("assembled %s: backbone + %d experts%s", out, E, " + routers" if routers_ckpt else "")
    return Path(out)


# --------------------------------------------------------------------------- stage 3 / MoE baselines


def load_m3dt(path: str | Path, moe_override: Mapping[str, Any] | None = None) -> tuple[M3DT, dict[str, Any]]:
    """The M3DT of a policy checkpoint; `moe_override` swaps router settings (the top-k
    ablation starts stage 3 from the same experts with a different, fresh router)."""
    ck = load_checkpoint(path)
    meta = dict(ck.get("meta", {}))
    spec = dict(meta.get("model_spec", {}))
    if spec.get("kind") != "m3dt":
        raise ValueError(f"{path} is not an M3DT checkpoint (model_spec.kind = {spec.get('kind')!r})")
    state = ck["model"]
    if moe_override:
        spec["moe"] = {**spec["moe"], **moe_override}
        state = {k: v for k, v in state.items() if ".router." not in k}
    model = build_model(spec)
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if ".router." not in k]
    if bad or unexpected:
        raise ValueError(f"{path}: state does not fit its model_spec (missing {bad[:3]}, unexpected {unexpected[:3]})")
    meta["model_spec"] = spec
    return model, meta


def run_router(cfg: TrainConfig, assembled_ckpt: str | Path, tasks: Sequence[str], data_dir: str | Path,
               out_dir: str | Path, train_experts: bool = False) -> RunResult:
    """Stage 3: backbone and experts frozen (experts trainable with `train_experts`, the
    ablation), routers (cfg.moe.router: dense | topk) trained on all tasks."""
    set_seed(cfg.loop.seed)
    override = {"router": cfg.moe.router, "top_k": cfg.moe.top_k, "router_hidden_mult": cfg.moe.router_hidden_mult,
                "topk_eval_noise": cfg.moe.topk_eval_noise, "mode": cfg.moe.mode}
    model, meta = load_m3dt(assembled_ckpt, override)
    model.set_routing("router")
    trainable = model.set_trainable(backbone=False, experts=train_experts, routers=True)
    sampler = load_sampler(data_dir, tasks, cfg)
    meta = {**meta, **_meta(_spec_of(model), sampler, cfg, "router", data_dir, [assembled_ckpt]), "routing": "router",
            "train_experts": train_experts, "assembled": str(assembled_ckpt)}
    return train(model, trainable, sampler, action_loss, cfg.loop, out_dir, meta=meta)


def run_e2e_moe(cfg: TrainConfig, tasks: Sequence[str], data_dir: str | Path, out_dir: str | Path) -> RunResult:
    """Baseline: backbone, experts and routers from scratch, trained jointly (no stages)."""
    set_seed(cfg.loop.seed)
    model = M3DT(cfg.model if cfg.model.ffn_residual == cfg.m3dt_block else
                 _with(cfg.model, ffn_residual=cfg.m3dt_block), cfg.moe)
    model.set_routing("router")
    sampler = load_sampler(data_dir, tasks, cfg)
    return train(model, model.parameters(), sampler, action_loss, cfg.loop, out_dir,
                 meta={**_meta(_spec_of(model), sampler, cfg, "e2e_moe", data_dir), "routing": "router"})


def _with(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def run_harmodt(cfg: TrainConfig, tasks: Sequence[str], data_dir: str | Path, out_dir: str | Path) -> RunResult:
    """Baseline HarmoDT: Prompt-DT with per-task harmony masks updated by a loop hook."""
    from m3dt.models.harmodt import HarmoConfig
    from m3dt.train.harmodt import harmodt_parts

    set_seed(cfg.loop.seed)
    sampler = load_sampler(data_dir, tasks, cfg)
    hcfg = HarmoConfig(**cfg.harmo)
    model, trainable, loss_fn, hooks = harmodt_parts(cfg.model, hcfg, sampler.tasks, total_steps=cfg.loop.steps,
                                                     sample_batch=sampler.sample_task)
    spec = model_spec("harmodt", cfg.model, harmo=hcfg) | {"tasks": sampler.tasks}
    return train(model, trainable, sampler, loss_fn, cfg.loop, out_dir,
                 meta=_meta(spec, sampler, cfg, "harmodt", data_dir), hooks=hooks)


STAGES = ("backbone", "mtdt", "prompt_dt", "harmodt", "expert", "experts_grouped", "router", "e2e_moe")


def run(stage: str, cfg: TrainConfig, out_dir: str | Path, *, tasks: Sequence[str] | None = None,
        data_dir: str | Path | None = None, backbone: str | Path | None = None, groups: str | Path | None = None,
        expert: int | None = None, assembled: str | Path | None = None, train_experts: bool = False) -> RunResult:
    """Dispatch one training run by name (the workflow's train rules and the CLI use this)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}, one of {STAGES}")
    if stage in ("backbone", "prompt_dt", "mtdt"):
        return run_backbone(cfg, tasks, data_dir, out_dir, kind="mtdt" if stage == "mtdt" else "prompt_dt")
    if stage == "harmodt":
        return run_harmodt(cfg, tasks, data_dir, out_dir)
    if stage == "expert":
        return run_expert(cfg, backbone, groups, int(expert), data_dir, out_dir, all_tasks=tasks)
    if stage == "experts_grouped":
        return run_experts_grouped(cfg, backbone, groups, data_dir, out_dir)
    if stage == "router":
        return run_router(cfg, assembled, tasks, data_dir, out_dir, train_experts)
    return run_e2e_moe(cfg, tasks, data_dir, out_dir)
