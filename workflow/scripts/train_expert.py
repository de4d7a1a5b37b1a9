"""Train (SAC) or set up (scripted) one expert and evaluate it: `m3dt.experts.sac.train_expert`."""

from pathlib import Path

from m3dt.experts.config import ExpertConfig
from m3dt.experts.sac import train_expert
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]) as log:
    cfg = ExpertConfig.from_dict(sm.params.config)
    cfg.torch_threads = sm.threads
    train_expert(sm.wildcards.expert, cfg, Path(sm.output[0]).parent, log=log)
