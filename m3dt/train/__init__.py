"""Training: one loop (`loop.train`), configured per stage and baseline (`stages`)."""

from m3dt.train.loop import LoopConfig, OptimConfig, RunResult, load_checkpoint, resolve_device, train

__all__ = ["LoopConfig", "OptimConfig", "RunResult", "load_checkpoint", "resolve_device", "train"]
