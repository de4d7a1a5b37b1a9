"""The single-task fidelity table and figure (Appendix A.3): `m3dt.plots.single_task`."""

from pathlib import Path

from m3dt.io import log_to
from m3dt.plots import single_task

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    table = single_task.build_from_scores(list(sm.input.scores), sm.params.tasks,
                                          sm.input.experts[0] if sm.input.experts else None,
                                          str(Path(sm.output.csv).with_suffix("")))
    single_task.single_task_figure(table, str(Path(sm.output.fig[0]).with_suffix("")), sm.params.preset)
