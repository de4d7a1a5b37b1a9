"""The one checkpoint contract: how a checkpoint file is written and read, the `meta` it
carries and how a model is rebuilt from it. Training, assembly, import, evaluation and the
analyses all go through here.

A checkpoint is `torch.save` of a dict: `model` (a state dict, maybe a subset: stage 2
keeps only its expert's weights), `step`, `meta`, and for resumable training checkpoints
also `optimizer`, `scheduler`, `batches`, `rng`, `loop_config`, `resume_key`.

A *policy* checkpoint's `meta` holds:

- `model_spec`: `{"kind": "prompt_dt" | "mtdt" | "m3dt" | "harmodt", "dt": {PromptDTConfig
  fields}, "moe": {MoEConfig fields} | None, "harmo": {HarmoDT config} | None}`, enough to
  rebuild the network with `build_model`;
- `tasks`: the task names the model was trained on (registry names);
- `stats`: `{task: (mean, std)}` of the training states, real dims (float32 lists);
- `prompts`: `{task: [prompt, ...]}`, each prompt a dict of numpy arrays of batch 1 in
  `Segment` order (`states, actions, rtg, timesteps, mask`), from the task's held-out
  prompt episodes; empty for MTDT;
- `prompt_returns`: `{task: [return, ...]}`, the return of each of those prompt episodes
  (evaluation's default prompt is the higher-return one, as the authors' `get_prompt(index=-1)`).

A stage-2 *expert* checkpoint's `meta` (`expert_meta`) holds `stage: "expert"`, `expert`,
`expert_tasks`, `n_groups`, `backbone`, `groups`; its `model` is one expert's weights.

Loading rule (`load_state`): unexpected keys are always an error; missing keys are an error
unless the caller names which may be missing. Keys of older checkpoints are renamed first
(`rename_legacy_keys`: the embeddings were `embed_state`, ... before `TokenEmbedding`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from m3dt.io import atomic_path

MODEL_KINDS = ("prompt_dt", "mtdt", "m3dt", "harmodt")
PROMPT_KEYS = ("states", "actions", "rtg", "timesteps", "mask")
POLICY_META_KEYS = ("model_spec", "tasks", "stats")


# --------------------------------------------------------------------------- files


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write `payload` atomically (a crash leaves the old file or none, never half of one)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict a checkpoint file holds; a missing or unreadable file names itself."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(f"checkpoint {path} could not be read: {e}") from e


def read_meta(path: str | Path) -> dict[str, Any]:
    """The `meta` of a checkpoint ({} when it has none)."""
    return dict(load_checkpoint(path).get("meta", {}))


# --------------------------------------------------------------------------- model spec


def model_spec(kind: str, dt: Any, moe: Any = None, harmo: Any = None) -> dict[str, Any]:
    """A plain-dict model description (dataclasses are converted) for checkpoints."""
    assert kind in MODEL_KINDS, f"unknown model kind {kind!r}, one of {MODEL_KINDS}"

    def plain(x: Any) -> Any:
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else (dict(x) if x is not None else None)

    return {"kind": kind, "dt": plain(dt), "moe": plain(moe), "harmo": plain(harmo)}


def spec_of(model: nn.Module) -> dict[str, Any]:
    """The `model_spec` of a PromptDT, MTDT or M3DT instance (HarmoDT: `model_spec` by hand)."""
    from m3dt.models import M3DT, MTDT

    if isinstance(model, M3DT):
        return model_spec("m3dt", model.cfg, model.moe_cfg)
    return model_spec("mtdt" if isinstance(model, MTDT) else "prompt_dt", model.cfg)


def build_model(spec: Mapping[str, Any], init_masks: bool = True) -> nn.Module:
    """The (untrained) network a `model_spec` describes (`init_masks=False`: HarmoDT's
    masks are left empty, for loading them from a checkpoint right after)."""
    from m3dt.models import M3DT, MTDT, MoEConfig, PromptDT, PromptDTConfig

    kind = spec.get("kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_spec.kind is {kind!r}; expected one of {MODEL_KINDS}")
    dt = PromptDTConfig(**spec["dt"])
    if kind == "prompt_dt":
        return PromptDT(dt)
    if kind == "mtdt":
        return MTDT(dt)
    if kind == "m3dt":
        if not spec.get("moe"):
            raise ValueError("model_spec.kind 'm3dt' needs model_spec.moe")
        return M3DT(dt, MoEConfig(**spec["moe"]))
    from m3dt.models.harmodt import HarmoDT  # kind == "harmodt"

    return HarmoDT.from_spec(spec, init_masks=init_masks)


# --------------------------------------------------------------------------- state


def rename_legacy_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with the keys of older checkpoints under today's names (same order, same
    values): `embed_state.weight` -> `input_embed.state.weight`, `prompt_embed_return.bias`
    -> `prompt_embed.rtg.bias`, under any prefix (`backbone.`, `dt.`), and HarmoDT's mask
    buffers (`masks.embed_state__weight` -> `masks.input_embed__state__weight`). Idempotent:
    today's keys are left as they are."""
    from m3dt.models.prompt_dt import rename_legacy_embed

    out = {rename_legacy_embed(k): v for k, v in state.items()}
    if len(out) != len(state):
        raise ValueError("state dict holds an embedding under both its old and its new name")
    return out


def load_state(model: nn.Module, state: Mapping[str, Tensor], source: str,
               missing_ok: bool | Callable[[str], bool] = False) -> None:
    """Load `state` into `model`. Unexpected keys are an error; a missing key is an error
    unless `missing_ok` is True (any, but not all of them) or a predicate that accepts it."""
    missing, unexpected = model.load_state_dict(rename_legacy_keys(state), strict=False)
    if missing_ok is True:
        if missing and len(missing) == len(model.state_dict()):
            raise ValueError(f"{source}: checkpoint holds none of the model's parameters")
        bad: list[str] = []
    elif missing_ok is False:
        bad = list(missing)
    else:
        bad = [k for k in missing if not missing_ok(k)]
    if bad or unexpected:
        raise ValueError(f"{source}: checkpoint does not match its model (missing {bad[:5]}, "
                         f"unexpected {list(unexpected)[:5]})")


def _is_router(key: str) -> bool:
    return ".router." in key


def load_model(path: str | Path, kind: str | None = None, moe: Mapping[str, Any] | None = None,
               init_masks: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a policy checkpoint (all weights set) and the checkpoint's meta.

    `kind`: the `model_spec.kind` required (None: any). `moe`: MoE settings that replace the
    checkpoint's (M3DT only); the routers are then fresh (the stage-3 start from assembled
    experts, e.g. with a top-k router) and `meta["model_spec"]` is the new spec."""
    ck = load_checkpoint(path)
    meta = dict(ck.get("meta", {}))
    spec = dict(meta.get("model_spec") or {})
    if kind is not None and spec.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} checkpoint (model_spec.kind = {spec.get('kind')!r})")
    state = ck["model"]
    missing_ok: bool | Callable[[str], bool] = False
    if moe is not None:
        if spec.get("kind") != "m3dt":
            raise ValueError(f"{path}: MoE settings apply to an m3dt checkpoint, not {spec.get('kind')!r}")
        spec["moe"] = dict(moe)
        state = {k: v for k, v in state.items() if not _is_router(k)}
        missing_ok = _is_router
    model = build_model(spec, init_masks=init_masks)
    load_state(model, state, str(path), missing_ok)
    meta["model_spec"] = spec
    return model, meta


# --------------------------------------------------------------------------- meta


def prompts_from_sampler(sampler: Any, tasks: Sequence[str]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every prompt episode of every task from a `MultiTaskSampler`, as numpy (batch 1)."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for t in tasks:
        i = sampler.task_index(t)
        out[t] = [dict(zip(PROMPT_KEYS, (x.numpy() for x in sampler.prompt(t, p))))
                  for p in range(int(sampler.n_prompts[i]))]
    return out


def policy_meta(spec: Mapping[str, Any], sampler: Any, tasks: Sequence[str], use_prompt: bool = True) -> dict[str, Any]:
    """The policy entries of a checkpoint's `meta` (see the module docstring)."""
    stats = {t: tuple(np.asarray(a, np.float32).tolist() for a in sampler.stats(t)) for t in tasks}
    return {"model_spec": dict(spec), "tasks": list(tasks), "stats": stats,
            "prompts": prompts_from_sampler(sampler, tasks) if use_prompt else {},
            "prompt_returns": {t: sampler.prompt_returns(t) for t in tasks} if use_prompt else {}}


def check_policy_meta(meta: Mapping[str, Any], path: str | Path) -> None:
    missing = [k for k in POLICY_META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint {path} lacks meta keys {missing}: not a policy checkpoint "
                         "(stage-2 expert checkpoints hold one expert; evaluate the assembled model)")


def expert_meta(expert: int, tasks: Sequence[str], n_groups: int, backbone: str | Path,
                groups: str | Path | None, **extra: Any) -> dict[str, Any]:
    """The `meta` of a stage-2 checkpoint of expert `expert` (see the module docstring)."""
    return {"stage": "expert", "expert": expert, "expert_tasks": list(tasks), "n_groups": n_groups,
            "backbone": str(backbone), "groups": str(groups) if groups else "none", **extra}


def load_expert(path: str | Path, expert: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state, meta) of the stage-2 checkpoint of expert `expert`: its weights as the slices
    of a one-expert bank (leading dimension dropped)."""
    ck = load_checkpoint(path)
    m = ck.get("meta", {})
    if m.get("stage") != "expert" or m.get("expert") != expert:
        raise ValueError(f"{path}: expected the stage-2 checkpoint of expert {expert}, found stage "
                         f"{m.get('stage')!r} expert {m.get('expert')!r}")
    return {k: v[0] for k, v in ck["model"].items()}, dict(m)  # (1, ...) slices of a one-expert bank


def router_state(path: str | Path) -> dict[str, Tensor]:
    """The router weights of an M3DT checkpoint (a stage-3 run)."""
    return {k: v for k, v in load_checkpoint(path)["model"].items() if _is_router(k)}


def fingerprint(paths: Sequence[str | Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of each input file: part of a run's identity (`loop.resume_key`)."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def run_meta(stage: str, train_config: Mapping[str, Any], inputs: Sequence[str | Path], *,
             spec: Mapping[str, Any] | None = None, sampler: Any = None, **extra: Any) -> dict[str, Any]:
    """The `meta` of a training run's checkpoints: the policy entries (with `spec` and
    `sampler`; the prompts unless the model is an MTDT), `stage`, `train_config`, the
    fingerprint of every input file, and `extra` entries (which win)."""
    meta: dict[str, Any] = {}
    if spec is not None:
        meta = policy_meta(spec, sampler, sampler.tasks, spec["kind"] != "mtdt")
    return {**meta, "stage": stage, "train_config": dict(train_config), "inputs": fingerprint(inputs), **extra}
