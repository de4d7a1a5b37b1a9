"""One training run (a stage or a baseline): `m3dt.train.stages.run`."""

from pathlib import Path

import torch

from m3dt.config import TrainConfig
from m3dt.io import log_to
from m3dt.train import stages

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    inputs = {k: sm.input[k] for k in ("groups", "assembled")
              if k in sm.input.keys() and isinstance(sm.input[k], str)}  # "none" grouping: no groups file
    if "backbone" in sm.params.keys():  # a kept stage-1 step checkpoint beside the declared final.pt
        inputs["backbone"] = sm.params.backbone
    stages.run(sm.params.stage, TrainConfig.from_dict(sm.params.train), Path(sm.output.final).parents[1],
               tasks=sm.params.get("tasks"), data_dir=sm.params.data_dir, expert=sm.params.get("expert"),
               train_experts=sm.params.get("train_experts", False), **inputs)
