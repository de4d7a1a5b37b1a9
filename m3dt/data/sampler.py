"""Vectorised multi-task segment sampler: Prompt-DT training batches from task datasets.

One sample is a segment of K steps of one task's training episode plus a prompt of that
task, both left-padded and on the shared 39 / 8 interface (paper.md §1, the authors'
`get_batch` / `get_prompt`):

- Episode: drawn with probability proportional to its length, among the top `pct_traj` of the
  task's training episodes by return (the authors' `process_dataset`; pct_traj = 1: all).
- Start: uniform in [0, len - 1]; the segment is steps [start, start + K) cut at the episode
  end, LEFT-padded to K.
- `states` (B, K, 39): (obs - mean) / std with the task's training-data mean/std, then
  zero-padded to 39 dims; padded timesteps are 0 (the authors normalise their zero padding,
  which the attention mask hides anyway).
- `actions` (B, K, 8): the data on real dims of real steps; 0 on the dims beyond the task's
  action_dim (as the authors' zero-padded data); `pad_action` (-10) on every dim of a padded
  timestep. `loss_mask` = attn_mask x action_mask selects exactly the real dims of real steps.
- `rtg` (B, K, 1): return-to-go from each step to the episode end (float64 sum of the
  rewards), divided by the suite's `rtg_scale`; 0 on padding.
- `timesteps` (B, K) int64: step within the episode, clipped to episode_length - 1 (the
  authors' cut-off); 0 on padding. `attn_mask` (B, K): 1 real, 0 padding.
- `action_mask` (B, 8): 1 on the task's real action dims. `task_index` (B,): index into
  `sampler.tasks`.
- Prompt (`prompt_*`, length prompt_len): `prompt_len` steps near the end of one of the
  task's prompt episodes, built like the segment (left padding if the episode is shorter;
  RTG to that episode's end; real timesteps).

The prompt is built as the authors' `get_prompt` by default (`SamplerConfig.authors()` is the
same); each of the three choices has a documented alternative:
- window, `prompt_end_offset=1`: their `si = max(0, T - prompt_len - 1)`, i.e. steps
  T-6..T-2 for prompt_len 5, skipping the final step (0: the last `prompt_len` steps);
- episode, `prompt_choice="authors"`: their non-stochastic choice: in a group of samples of
  one task, positions 0 and 2 take the lower-return prompt episode and all others the
  higher-return one ("random": a uniformly drawn prompt episode per sample);
- statistics, `prompt_stats="prompt"`: prompt states normalised with the mean/std of the
  task's prompt episodes themselves ("train": with the training episodes' mean/std).

Randomness: each `sample` call draws `rng.random((4, B))`, rows = (task, episode, start,
prompt) uniforms, and turns them into indices by integer arithmetic (floor(u * n); an
episode by locating floor(u * steps) in the cumulative lengths), so the readable per-sample
reference (`m3dt.data.sampler_reference.NaiveSampler`) gives identical batches.
Batch building is numpy index arithmetic over flat concatenated arrays of all tasks (no
Python loop over samples or tasks); see `MultiTaskSampler` for the memory layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from m3dt import tasks
from m3dt.data.store import STD_FLOOR, TaskData
from m3dt.dataclass_io import from_mapping

OBS, ACT = tasks.OBS_PAD, tasks.ACT_PAD
MODES = ("round_robin", "mixed")
PROMPT_CHOICES = ("random", "authors")
PROMPT_STATS = ("train", "prompt")


@dataclass
class SamplerConfig:
    """Batch sampling settings (the paper's values as defaults)."""

    K: int = 20  #: timesteps per segment
    prompt_len: int = 5  #: timesteps per prompt
    batch_size: int = 16  #: segments per batch
    mode: str = "round_robin"  #: "round_robin": one task per batch, cycling tasks in order; "mixed": task per sample
    pct_traj: float = 1.0  #: sample from the top pct_traj of training steps, by episode return
    pad_action: float = -10.0  #: action value on padded timesteps
    seed: int = 0  #: sampler RNG seed
    prompt_choice: str = "authors"  #: "authors" (fixed by position in the batch) or "random" prompt episode per sample
    prompt_stats: str = "prompt"  #: normalise prompt states with the "prompt" (authors) or the "train" episodes' mean/std
    prompt_end_offset: int = 1  #: steps skipped at the prompt episode's end (authors: 1, steps T-6..T-2)

    def __post_init__(self) -> None:
        if self.K < 1 or self.prompt_len < 1 or self.batch_size < 1:
            raise ValueError(f"K, prompt_len, batch_size must be >= 1: {self}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 < self.pct_traj <= 1.0:
            raise ValueError(f"pct_traj must be in (0, 1], got {self.pct_traj}")
        if self.prompt_choice not in PROMPT_CHOICES:
            raise ValueError(f"prompt_choice must be one of {PROMPT_CHOICES}, got {self.prompt_choice!r}")
        if self.prompt_stats not in PROMPT_STATS:
            raise ValueError(f"prompt_stats must be one of {PROMPT_STATS}, got {self.prompt_stats!r}")
        if self.prompt_end_offset < 0:
            raise ValueError(f"prompt_end_offset must be >= 0, got {self.prompt_end_offset}")

    @classmethod
    def authors(cls, **overrides: Any) -> "SamplerConfig":
        """The authors' prompt construction exactly (the defaults; see the module docstring)."""
        kw = dict(prompt_choice="authors", prompt_stats="prompt", prompt_end_offset=1)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "train.sampler") -> "SamplerConfig":
        """The config of the mapping `d` (`where`: its place, for errors); an unknown key or a
        value of the wrong type is a `ConfigError` naming `where.key`."""
        return from_mapping(cls, d, where)


@dataclass
class Batch:
    """A training batch of torch tensors (B samples, K steps, prompt length L)."""

    states: torch.Tensor  # (B, K, 39) float32, normalised, zero-padded
    actions: torch.Tensor  # (B, K, 8) float32, pad_action on padded steps, 0 beyond action_dim
    rtg: torch.Tensor  # (B, K, 1) float32, return-to-go / rtg_scale
    timesteps: torch.Tensor  # (B, K) int64
    attn_mask: torch.Tensor  # (B, K) float32, 1 real / 0 left padding
    action_mask: torch.Tensor  # (B, 8) float32, 1 on the task's real action dims
    task_index: torch.Tensor  # (B,) int64, index into the sampler's task list
    prompt_states: torch.Tensor  # (B, L, 39)
    prompt_actions: torch.Tensor  # (B, L, 8)
    prompt_rtg: torch.Tensor  # (B, L, 1)
    prompt_timesteps: torch.Tensor  # (B, L) int64
    prompt_mask: torch.Tensor  # (B, L) float32

    @classmethod
    def from_numpy(cls, arrays: Mapping[str, np.ndarray]) -> "Batch":
        """Wrap numpy arrays (no copy where already contiguous)."""
        return cls(**{k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in _BATCH_FIELDS})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                        for f in dataclasses.fields(self)})

    def numpy(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name).cpu().numpy() for f in dataclasses.fields(self)}

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """(states, actions, rtg, timesteps, attn_mask): the model's input segment."""
        return self.states, self.actions, self.rtg, self.timesteps, self.attn_mask

    @property
    def prompt(self) -> tuple[torch.Tensor, ...]:
        """(states, actions, rtg, timesteps, mask) of the prompt, in `Segment` order."""
        return self.prompt_states, self.prompt_actions, self.prompt_rtg, self.prompt_timesteps, self.prompt_mask

    @property
    def loss_mask(self) -> torch.Tensor:
        """(B, K, 8): 1 on the real action dims of real timesteps."""
        return self.attn_mask[:, :, None] * self.action_mask[:, None, :]

    def __len__(self) -> int:
        return int(self.states.shape[0])


_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))


# --------------------------------------------------------------------------- helpers


def as_task_data(name: str, data: TaskData | Mapping[str, np.ndarray]) -> TaskData:
    """A TaskData for `data` (a TaskData, or a mapping of the store schema's arrays)."""
    if isinstance(data, TaskData):
        if data.task != tasks.canonical_name(name):
            raise ValueError(f"task data for {name!r} holds task {data.task!r}")
        return data
    return TaskData.from_arrays(name, data)


def top_episodes(lengths: np.ndarray, returns: np.ndarray, pct_traj: float) -> np.ndarray:
    """Positions of the top `pct_traj` episodes by return (the authors' `process_dataset`):
    the best episode, then the next best while their total steps stay <= pct_traj * all
    steps. Ties in return are ranked by position. Returned in ascending order."""
    lengths = np.asarray(lengths, dtype=np.int64)
    budget = max(int(pct_traj * int(lengths.sum())), 1)
    order = np.argsort(-np.asarray(returns, dtype=np.float64), kind="stable")
    n = max(1, int(np.count_nonzero(np.cumsum(lengths[order]) <= budget)))
    return np.sort(order[:n])


def returns_to_go(rewards: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N,) float64 return-to-go of every step within its episode (sequential float64 sums
    from the episode end, as a Python loop would add them)."""
    r = np.asarray(rewards, dtype=np.float64)
    out = np.zeros(len(r), dtype=np.float64)
    if len(lengths) == 0:
        return out
    # one row per episode, its rewards reversed; cumsum along the row is the reversed RTG
    step = max(1, (1 << 22) // max(int(lengths.max()), 1))  # rows per chunk: ~4M cells
    j = np.arange(int(lengths.max()))
    for a in range(0, len(lengths), step):
        s, n = starts[a:a + step, None], lengths[a:a + step, None]
        valid = j[None, :] < n
        src = np.where(valid, s + n - 1 - j[None, :], 0)
        acc = np.cumsum(np.where(valid, r[src], 0.0), axis=1)
        out[src[valid]] = acc[valid]
    return out


def prompt_window(T: int, prompt_len: int, end_offset: int = 0) -> tuple[int, int]:
    """[start, end) of a prompt in an episode of T steps: the last `prompt_len` steps before
    the final `end_offset` ones (the authors: `si = max(0, T - prompt_len - 1)`)."""
    start = max(0, T - prompt_len - end_offset)
    return start, min(start + prompt_len, T)


def authors_prompt_rank(j: np.ndarray, n_prompts: np.ndarray) -> np.ndarray:
    """Position, in ascending-return order, of the prompt episode the authors' `get_prompt`
    gives the j-th sample of a task (`sorted_inds[-i]`, with i reset to 1 once i > P)."""
    j = np.asarray(j, dtype=np.int64)
    P = np.asarray(n_prompts, dtype=np.int64)
    return np.where(j == 0, 0, np.where(j <= P, P - j, P - 1))


# --------------------------------------------------------------------------- the sampler


class MultiTaskSampler:
    """Segments + prompts of several tasks; see the module docstring.

    `task_data` maps task names to `TaskData` (file-backed ones are read one task at a time)
    or to mappings of the store schema's arrays. Its order is the task order (round robin;
    `task_index`).

    Memory layout: every task's steps, back to back, in three flat arrays, each with one
    extra "padding" row at the end: `obs_buf` (N + 1, 39) float32 already normalised and
    zero-padded, `act_buf` (N + 1, 8) float32 (0 beyond action_dim; the padding row is
    pad_action), `rtg_buf` (N + 1,) float32 already divided by the rtg scale. A batch is then
    one row gather per array, with left-padded positions pointing at the padding row: about
    4 x (39 + 8 + 1) = 192 bytes per step, the same as the authors' 39 / 8 padded arrays.
    """

    def __init__(self, task_data: Mapping[str, TaskData | Mapping[str, np.ndarray]],
                 cfg: SamplerConfig | None = None) -> None:
        self.cfg = cfg = cfg or SamplerConfig()
        if not task_data:
            raise ValueError("MultiTaskSampler needs at least one task")
        datas = [as_task_data(n, d) for n, d in task_data.items()]
        self.tasks: list[str] = [d.task for d in datas]
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"duplicate tasks in {list(task_data)}")
        self.specs = [tasks.get(t) for t in self.tasks]
        n = len(datas)
        self.obs_dim = np.array([s.obs_dim for s in self.specs], dtype=np.int64)
        self.act_dim = np.array([s.action_dim for s in self.specs], dtype=np.int64)
        self.t_max = np.array([s.episode_length - 1 for s in self.specs], dtype=np.int64)
        n_steps = np.array([d.n_steps for d in datas], dtype=np.int64)
        self.step_base = np.concatenate([[0], np.cumsum(n_steps)[:-1]]).astype(np.int64)
        self.pad_row = int(n_steps.sum())  # the padding row of the flat arrays
        self.obs_buf = np.zeros((self.pad_row + 1, OBS), dtype=np.float32)
        self.act_buf = np.zeros((self.pad_row + 1, ACT), dtype=np.float32)
        self.act_buf[self.pad_row] = cfg.pad_action
        self.rtg_buf = np.zeros(self.pad_row + 1, dtype=np.float32)
        self.mean = np.zeros((n, OBS), dtype=np.float32)
        self.std = np.ones((n, OBS), dtype=np.float32)
        sel_row, sel_len, self.sel_total = [], [], np.zeros(n, dtype=np.int64)
        prompts: list[dict[str, np.ndarray]] = []
        self.n_prompts = np.zeros(n, dtype=np.int64)
        prompt_rank: list[np.ndarray] = []
        prompt_returns: list[np.ndarray] = []
        for i, (d, spec) in enumerate(zip(datas, self.specs)):
            N, od, ad, b = int(n_steps[i]), spec.obs_dim, spec.action_dim, int(self.step_base[i])
            obs = np.empty((N, od), dtype=np.float32)  # raw, one task at a time
            d.read_into("observations", obs)
            acts = np.empty((N, ad), dtype=np.float32)
            d.read_into("actions", acts)
            self.act_buf[b:b + N, :ad] = acts
            starts, lengths, returns = d.episode_starts, d.episode_lengths, d.episode_returns
            rtg = returns_to_go(d.rewards, starts, lengths)
            self.rtg_buf[b:b + N] = (rtg / spec.rtg_scale).astype(np.float32)
            self.mean[i, :od], self.std[i, :od] = d.state_mean, d.state_std
            p_eps = d.prompt_episodes
            if len(p_eps) == 0:
                raise ValueError(f"{spec.name}: no prompt episodes")
            self.n_prompts[i] = len(p_eps)
            prompt_rank.append(np.argsort(returns[p_eps], kind="stable"))
            prompt_returns.append(np.asarray(returns[p_eps], dtype=np.float64))
            prompts.append(self._prompt_table(i, obs, acts, starts[p_eps], lengths[p_eps], rtg))
            self.obs_buf[b:b + N, :od] = (obs - self.mean[i, :od]) / self.std[i, :od]
            del obs, acts
            train = d.train_episodes
            chosen = train[top_episodes(lengths[train], returns[train], cfg.pct_traj)]
            sel_row.append(b + starts[chosen])
            sel_len.append(lengths[chosen])
            self.sel_total[i] = int(lengths[chosen].sum())
        self.sel_row = np.concatenate(sel_row).astype(np.int64)  # first row of each selected episode
        self.sel_len = np.concatenate(sel_len).astype(np.int64)
        self.sel_cum = np.cumsum(self.sel_len)  # exclusive end, in selected steps, of each selected episode
        self.sel_base = np.concatenate([[0], np.cumsum(self.sel_total)[:-1]]).astype(np.int64)
        self.prompt_base = np.concatenate([[0], np.cumsum(self.n_prompts)[:-1]]).astype(np.int64)
        self.prompt_rank = np.concatenate(prompt_rank).astype(np.int64)  # local index of the k-th lowest return
        self.prompt_return = np.concatenate(prompt_returns)  # (P_total,) float64 return of each prompt episode
        self.prompt_table = {k: np.concatenate([p[k] for p in prompts]) for k in prompts[0]}
        self.action_masks = (np.arange(ACT)[None, :] < self.act_dim[:, None]).astype(np.float32)
        self._steps = np.arange(cfg.K)[None, :]
        self.rng = np.random.default_rng(cfg.seed)
        self.cursor = 0

    # -- prompts
    def _prompt_table(self, i: int, obs: np.ndarray, acts: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                      rtg: np.ndarray) -> dict[str, np.ndarray]:
        """The prompt of each prompt episode of task i: (P, L, ...) arrays (from raw obs)."""
        cfg, spec = self.cfg, self.specs[i]
        L, od, ad, P = cfg.prompt_len, spec.obs_dim, spec.action_dim, len(starts)
        if cfg.prompt_stats == "prompt":
            rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])
            x = obs[rows].astype(np.float64)
            mean, std = x.mean(0).astype(np.float32), np.maximum(x.std(0), STD_FLOOR).astype(np.float32)
        else:
            mean, std = self.mean[i, :od], self.std[i, :od]
        out = {"states": np.zeros((P, L, OBS), np.float32), "actions": np.full((P, L, ACT), cfg.pad_action, np.float32),
               "rtg": np.zeros((P, L, 1), np.float32), "timesteps": np.zeros((P, L), np.int64),
               "mask": np.zeros((P, L), np.float32)}
        for p, (s, n) in enumerate(zip(starts, lengths)):  # P (= 2) episodes per task, at construction
            a, b = prompt_window(int(n), L, cfg.prompt_end_offset)
            m = b - a
            rows = slice(int(s) + a, int(s) + b)
            out["states"][p, L - m:, :od] = (obs[rows] - mean) / std
            out["actions"][p, L - m:, :] = 0.0
            out["actions"][p, L - m:, :ad] = acts[rows]
            out["rtg"][p, L - m:, 0] = (rtg[rows] / spec.rtg_scale).astype(np.float32)
            out["timesteps"][p, L - m:] = np.minimum(np.arange(a, b), self.t_max[i])
            out["mask"][p, L - m:] = 1.0
        return out

    def prompt(self, task: str, episode: int = 0) -> tuple[torch.Tensor, ...]:
        """The prompt from the task's `episode`-th prompt episode, batch 1, in `Segment`
        order (states, actions, rtg, timesteps, mask): for evaluation."""
        i = self.task_index(task)
        if not 0 <= episode < self.n_prompts[i]:
            raise IndexError(f"{self.tasks[i]} has {self.n_prompts[i]} prompt episodes, not {episode + 1}")
        g = self.prompt_base[i] + episode
        return tuple(torch.from_numpy(self.prompt_table[k][g:g + 1].copy())
                     for k in ("states", "actions", "rtg", "timesteps", "mask"))

    def prompt_returns(self, task: str) -> list[float]:
        """The returns of the task's prompt episodes, in `prompt(task, episode)` order."""
        i = self.task_index(task)
        b = int(self.prompt_base[i])
        return self.prompt_return[b:b + int(self.n_prompts[i])].tolist()

    def task_index(self, task: str) -> int:
        name = tasks.canonical_name(task)
        if name not in self.tasks:
            raise KeyError(f"task {name!r} is not one of this sampler's {len(self.tasks)} tasks")
        return self.tasks.index(name)

    # -- sampling
    def _draw(self, B: int) -> np.ndarray:
        return self.rng.random((4, B))

    def sample_task(self, task: str, batch_size: int | None = None) -> Batch:
        """A batch of `batch_size` (default cfg.batch_size) segments of one task."""
        B = batch_size or self.cfg.batch_size
        u = self._draw(B)
        return self._gather(np.full(B, self.task_index(task), dtype=np.int64), u)

    def sample(self, task: str | None = None) -> Batch:
        """The next batch: of `task` if given; else round robin (the next task in order) or
        mixed (a uniformly drawn task per sample)."""
        if task is not None:
            return self.sample_task(task)
        B, n = self.cfg.batch_size, len(self.tasks)
        u = self._draw(B)
        if self.cfg.mode == "round_robin":
            t = np.full(B, self.cursor, dtype=np.int64)
            self.cursor = (self.cursor + 1) % n
        else:
            t = np.minimum((u[0] * n).astype(np.int64), n - 1)
        return self._gather(t, u)

    def _gather(self, t: np.ndarray, u: np.ndarray) -> Batch:
        cfg = self.cfg
        B, K = len(t), cfg.K
        # episode ∝ length: a uniform step among the task's selected steps, then its episode
        total = self.sel_total[t]
        r = self.sel_base[t] + np.minimum((u[1] * total).astype(np.int64), total - 1)
        e = np.searchsorted(self.sel_cum, r, side="right")  # (B,) selected episode
        n = self.sel_len[e]
        start = np.minimum((u[2] * n).astype(np.int64), n - 1)
        off = self._steps - (K - np.minimum(K, n - start))[:, None]  # (B, K) step - start; < 0: padding
        real = off >= 0
        rows = np.where(real, (self.sel_row[e] + start)[:, None] + off, self.pad_row)  # (B, K) flat rows
        timesteps = np.where(real, np.minimum(start[:, None] + off, self.t_max[t][:, None]), 0)
        # prompts
        P = self.n_prompts[t]
        if cfg.prompt_choice == "random":
            local_p = np.minimum((u[3] * P).astype(np.int64), P - 1)
        else:
            order = np.argsort(t, kind="stable")
            ts = t[order]
            j = np.empty(B, dtype=np.int64)
            j[order] = np.arange(B) - np.searchsorted(ts, ts, side="left")  # position within its task's group
            local_p = self.prompt_rank[self.prompt_base[t] + authors_prompt_rank(j, P)]
        g = self.prompt_base[t] + local_p
        pt = self.prompt_table
        f = torch.from_numpy  # every array below is a fresh contiguous one (ndarray.take: the fast row gather)
        return Batch(
            states=f(self.obs_buf.take(rows, axis=0)),
            actions=f(self.act_buf.take(rows, axis=0)),
            rtg=f(self.rtg_buf.take(rows)[:, :, None]),
            timesteps=f(timesteps),
            attn_mask=f(real.astype(np.float32)),
            action_mask=f(self.action_masks.take(t, axis=0)),
            task_index=f(np.ascontiguousarray(t)),
            prompt_states=f(pt["states"].take(g, axis=0)),
            prompt_actions=f(pt["actions"].take(g, axis=0)),
            prompt_rtg=f(pt["rtg"].take(g, axis=0)),
            prompt_timesteps=f(pt["timesteps"].take(g, axis=0)),
            prompt_mask=f(pt["mask"].take(g, axis=0)),
        )

    # -- training-loop protocol (m3dt.train.loop.BatchSource)
    def next(self, step: int) -> tuple[str, Batch]:
        """(task name, batch): round robin names the batch's task; mixed gives "mixed"."""
        if self.cfg.mode == "round_robin":
            name = self.tasks[self.cursor]
            return name, self.sample()
        return "mixed", self.sample()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "cursor": int(self.cursor), "tasks": list(self.tasks),
                "config": dataclasses.asdict(self.cfg)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["tasks"]) != self.tasks:
            raise ValueError(f"sampler state is for tasks {list(state['tasks'])[:5]}..., not {self.tasks[:5]}...")
        self.rng.bit_generator.state = state["rng"]
        self.cursor = int(state["cursor"])

    def stats(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the task's training states, real dims (for evaluation)."""
        i = self.task_index(task)
        od = int(self.obs_dim[i])
        return self.mean[i, :od].copy(), self.std[i, :od].copy()
