"""Import one task of the authors' layout (`SRC/<task>/<i>.npz`): `m3dt.data.importer`."""

from pathlib import Path

from m3dt.data.importer import import_dir
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    import_dir(sm.params.src, Path(sm.output[0]).parent, tasks=[sm.wildcards.task],
               max_episodes=sm.params.max_episodes)
