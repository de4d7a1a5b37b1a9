"""Backbone + E stage-2 experts -> one M3DT checkpoint: `m3dt.train.stages.assemble`."""

from m3dt.config import TrainConfig
from m3dt.io import log_to
from m3dt.train import stages

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    stages.assemble(sm.params.backbone, list(sm.input.experts), sm.output[0], TrainConfig.from_dict(sm.params.train))
