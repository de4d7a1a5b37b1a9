"""Write the registry rows of the rule's task list (all of MT160 without `params.tasks`)."""

from m3dt.io import log_to
from m3dt.tasks import write_task_table

with log_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    write_task_table(snakemake.output[0], snakemake.params.get("tasks"))  # noqa: F821
