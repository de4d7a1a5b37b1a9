"""Run one `python -m m3dt` command (argv in `params.argv`) with the job's log."""

import torch

from m3dt.__main__ import main
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    rc = main([str(a) for a in sm.params.argv])
    if rc:
        raise SystemExit(f"python -m m3dt {' '.join(map(str, sm.params.argv[:2]))} exited with {rc}")
