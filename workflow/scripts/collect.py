"""Roll out a task's expert into `<results>/data/<task>.h5`: `m3dt.data.collect.collect_task`."""

from m3dt.data.collect import CollectConfig, collect_task
from m3dt.experts.kinds import load_expert
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]) as log:
    task = sm.wildcards.task
    collect_task(task, load_expert(task, sm.params.expert_root), CollectConfig.from_dict(sm.params.config),
                 sm.output[0], log)
