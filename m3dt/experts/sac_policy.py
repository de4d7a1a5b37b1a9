"""Actor-only SAC policies: what a trained or bundled expert ships (`policy.pt`).

A stable-baselines3 SAC agent (`model.zip`) carries its critics, target critics and
optimisers; data collection only needs the actor's deterministic action. `export_actor`
writes the actor's state dict plus what rebuilds it (spaces, net_arch, gSDE settings)
as plain tensors and numbers, so `load_actor` reads it with `torch.load(weights_only=True)`
(no pickled code). The rebuilt policy is stable-baselines3's own `Actor` class, so its
actions equal `SAC.predict(obs, deterministic=True)` exactly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m3dt.io import atomic_path

if TYPE_CHECKING:  # heavy imports only where used
    from stable_baselines3 import SAC

FORMAT = "m3dt-sac-actor/1"
POLICY_FILE = "policy.pt"


class BadPolicyFile(ValueError):
    """A `policy.pt` that is missing, corrupt or of another format (the message names the file)."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_actor(model: "SAC", path: str | os.PathLike) -> str:
    """Write `model`'s actor to `path` (atomically); returns the file's sha256."""
    import torch

    actor = model.policy.actor
    obs_space, act_space = model.observation_space, model.action_space
    blob: dict[str, Any] = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
        "obs_shape": list(obs_space.shape),
        "action_low": torch.as_tensor(np.asarray(act_space.low, dtype=np.float32)),
        "action_high": torch.as_tensor(np.asarray(act_space.high, dtype=np.float32)),
        "net_arch": [int(x) for x in actor.net_arch],
        "use_sde": bool(actor.use_sde),
        "log_std_init": float(actor.log_std_init),
        "full_std": bool(actor.full_std),
        "use_expln": bool(actor.use_expln),
        "clip_mean": float(actor.clip_mean),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return sha256_of(path)


class ActorPolicy:
    """A rebuilt SAC actor with `predict(obs, deterministic=True) -> (action, None)`, the
    interface `SACExpert` uses (deterministic only: the data's noise is added by collection)."""

    def __init__(self, actor, low: np.ndarray, high: np.ndarray):
        self.actor = actor
        self.low, self.high = low, high

    def predict(self, obs: np.ndarray, deterministic: bool = True):
        import torch

        assert deterministic, "a bundled actor acts deterministically"
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        with torch.no_grad():
            x = torch.as_tensor(obs.reshape(1, -1) if single else obs)  # (B, obs_dim)
            squashed = self.actor(x, deterministic=True).numpy()  # (B, act_dim) in [-1, 1]
        action = self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)  # SB3's unscale_action
        return (action[0] if single else action), None


def load_actor(path: str | os.PathLike, *, expected_sha256: str | None = None) -> ActorPolicy:
    """The actor in `path` (BadPolicyFile naming the file when missing, corrupt or altered)."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from stable_baselines3.sac.policies import Actor

    path = Path(path)
    if not path.is_file():
        raise BadPolicyFile(f"{path}: no such policy file")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise BadPolicyFile(f"{path}: sha256 differs from the one recorded in its expert.json (file altered or "
                            "corrupt); restore it or retrain the expert")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise BadPolicyFile(f"{path}: not a readable policy file ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise BadPolicyFile(f"{path}: expected format {FORMAT!r}, got {blob.get('format') if isinstance(blob, dict) else type(blob)}")
    low = blob["action_low"].numpy().astype(np.float32)
    high = blob["action_high"].numpy().astype(np.float32)
    obs_space = gym.spaces.Box(-np.inf, np.inf, tuple(blob["obs_shape"]), dtype=np.float32)
    act_space = gym.spaces.Box(low, high, dtype=np.float32)
    extractor = FlattenExtractor(obs_space)
    actor = Actor(obs_space, act_space, net_arch=list(blob["net_arch"]), features_extractor=extractor,
                  features_dim=extractor.features_dim, use_sde=blob["use_sde"], log_std_init=blob["log_std_init"],
                  full_std=blob["full_std"], use_expln=blob["use_expln"], clip_mean=blob["clip_mean"])
    try:
        actor.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise BadPolicyFile(f"{path}: weights do not fit the recorded architecture ({e})") from None
    actor.eval()
    return ActorPolicy(actor, low, high)
