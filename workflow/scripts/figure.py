"""One paper figure or table from evaluation summaries and conflict CSVs: `m3dt.plots`."""

from pathlib import Path

from m3dt import plots
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    fig = sm.wildcards.fig
    scores = plots.collect_scores(list(sm.input.scores), sm.params.score_params) if sm.input.scores else None
    conflict = (plots.collect_conflict(list(sm.input.conflict), sm.params.conflict_params)
                if sm.input.conflict else None)
    single = plots.read_single_task(sm.input.single_task[0]) if sm.input.single_task else None
    prefix = str(Path(sm.output.csv).with_suffix(""))
    plots.make(fig, prefix, sm.params.preset, scores=scores, conflict=conflict, metric=sm.params.metric,
               single_task=single)
