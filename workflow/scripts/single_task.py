"""The single-task fidelity table and figure (Appendix A.3): `m3dt.plots.workflow`."""

from pathlib import Path

from m3dt.io import log_to
from m3dt.plots.workflow import single_task_from_runs

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    single_task_from_runs(list(sm.input.scores), sm.params.tasks, sm.params.expert_root,
                          str(Path(sm.output.csv).with_suffix("")), str(Path(sm.output.fig[0]).with_suffix("")),
                          sm.params.preset)
