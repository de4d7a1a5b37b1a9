"""Backbone + E stage-2 experts -> one M3DT checkpoint: stage "assemble" of `m3dt.train.stages.run`."""

from m3dt.config import TrainConfig
from m3dt.io import log_to
from m3dt.train import stages

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    stages.run("assemble", TrainConfig.from_dict(sm.params.train), sm.output[0], backbone=sm.params.backbone,
               experts=list(sm.input.experts))
