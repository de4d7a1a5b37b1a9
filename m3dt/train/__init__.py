"""Training: one loop (`loop.train`), configured per stage and baseline (`stages`)."""

from m3dt.train.loop import RunResult, train

__all__ = ["RunResult", "train"]
