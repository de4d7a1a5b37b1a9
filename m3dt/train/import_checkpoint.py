"""`python -m m3dt import-checkpoint`: an authors' model as a checkpoint `evaluate` reads.

    python -m m3dt import-checkpoint --src AUTHORS.pt --kind prompt_dt --data results/data --out C.pt
    python -m m3dt import-checkpoint --src BACKBONE.pt --moe MOE.pt --kind m3dt --data results/data --out C.pt

`--src` is what the authors' code saves: for `prompt_dt` their stage-1 / dense
`PromptDecisionTransformer.state_dict()`; for `m3dt` either a full `PromptDTMoE.state_dict()`
or, with `--moe`, the stage-1 backbone plus their stage-3 `save_moe` file. The weights are
mapped by `m3dt.models.authors`. What acting needs besides weights (per-task state mean/std
and the prompts, see `m3dt.policy`) comes from the task data in `--data` (`<task>.h5`, e.g.
the authors' files imported with `python -m m3dt data import`), built with the authors'
prompt construction (`SamplerConfig.authors()`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from m3dt import tasks as registry
from m3dt.models.authors import Converted, convert_m3dt, convert_prompt_dt, split_prompt_dt_moe
from m3dt.checkpoint import build_model, model_spec, policy_meta, save_checkpoint

KINDS = ("prompt_dt", "m3dt")


def _load_state(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(f"{what} {path} could not be read as a torch state dict: {e}") from e
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what} {path}: expected a state dict (a mapping), got {type(obj).__name__}")
    return dict(obj)


def convert(kind: str, src: Mapping[str, Any], moe: Mapping[str, Any] | None = None, n_head: int = 8,
            top_k: int | None = None) -> Converted:
    """Map the authors' state dict(s) of a `kind` model onto ours (see `m3dt.models.authors`)."""
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {KINDS}, got {kind!r}")
    if kind == "prompt_dt":
        if moe is not None:
            raise ValueError("--moe is for --kind m3dt only")
        return convert_prompt_dt(src, n_head)
    if moe is None:
        backbone, blocks = split_prompt_dt_moe(src)
    else:
        backbone, blocks = dict(src), {k: dict(v) for k, v in moe.items()}
    return convert_m3dt(backbone, blocks, n_head, top_k)


def load_converted(conv: Converted, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Our model holding the converted weights (strict: every parameter is set)."""
    spec = model_spec(conv.kind, conv.dt, conv.moe)
    model = build_model(spec).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in conv.state.items()}, strict=True)
    return model.eval()


def import_checkpoint(kind: str, src: str | Path, out: str | Path, data_dir: str | Path,
                      task_names: Sequence[str] | None = None, moe: str | Path | None = None, n_head: int = 8,
                      top_k: int | None = None) -> Path:
    """Convert the authors' model at `src` (and `moe`) and write our checkpoint `out`."""
    from m3dt.config import TrainConfig
    from m3dt.data.sampler import SamplerConfig
    from m3dt.train.data import data_path, load_sampler

    conv = convert(kind, _load_state(src, "--src"), _load_state(moe, "--moe") if moe else None, n_head, top_k)
    model = load_converted(conv)
    if task_names:
        names = registry.resolve(list(task_names))
    else:
        names = [t for t in registry.MT160 if data_path(data_dir, t).is_file()]
        if not names:
            raise FileNotFoundError(f"no task data (<task>.h5) in {data_dir}; import the authors' data first")
    sampler_cfg = SamplerConfig.authors(K=conv.dt.context_len, prompt_len=conv.dt.prompt_len)
    cfg = TrainConfig.from_dict({"model": {"context_len": conv.dt.context_len, "prompt_len": conv.dt.prompt_len},
                                 "sampler": vars(sampler_cfg)})
    sampler = load_sampler(data_dir, names, cfg)
    spec = model_spec(conv.kind, conv.dt, conv.moe)
    state: dict[str, Tensor] = model.state_dict()
    meta = {**policy_meta(spec, sampler, sampler.tasks), "stage": "imported", "routing": "router",
            "imported_from": {"kind": kind, "src": str(src), "moe": str(moe) if moe else None}}
    return save_checkpoint(Path(out), {"model": state, "meta": meta, "step": 0})


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", required=True, help="the authors' state dict (torch.save of model.state_dict())")
    p.add_argument("--kind", required=True, choices=KINDS, help="prompt_dt: stage 1 / dense; m3dt: the MoE model")
    p.add_argument("--moe", help="with --kind m3dt and a backbone --src: the authors' stage-3 save_moe file")
    p.add_argument("--out", required=True, help="our checkpoint to write (read by `python -m m3dt evaluate`)")
    p.add_argument("--data", default="results/data", help="task data <task>.h5: state statistics and prompts")
    p.add_argument("--tasks", nargs="+", help="tasks the checkpoint acts on (default: every task with data)")
    p.add_argument("--n-head", type=int, default=8, help="attention heads (not in the weights; authors: 8)")
    p.add_argument("--top-k", type=int, help="k of a top-k router (with --kind m3dt)")


def run(args: argparse.Namespace) -> int:
    path = import_checkpoint(args.kind, args.src, args.out, args.data, args.tasks, args.moe, args.n_head, args.top_k)
    print(f"wrote {path}")
    return 0
