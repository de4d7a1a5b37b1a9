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
import io
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
    """Write `model`'s actor (an SB3 or an sbx agent) to `path` (atomically); returns the
    file's sha256."""
    import torch

    from m3dt.experts.sac_library import library_of

    obs_space, act_space = model.observation_space, model.action_space
    if library_of(model) == "sbx":
        state_dict, arch = _sbx_actor_state_dict(model)
        rebuild = {"net_arch": arch, "use_sde": False, "log_std_init": -3.0, "full_std": True, "use_expln": False,
                   "clip_mean": 2.0}  # SB3's Actor without gSDE: mu and log_std heads, as sbx's actor
    else:
        actor = model.policy.actor
        state_dict = {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()}
        rebuild = {"net_arch": [int(x) for x in actor.net_arch], "use_sde": bool(actor.use_sde),
                   "log_std_init": float(actor.log_std_init), "full_std": bool(actor.full_std),
                   "use_expln": bool(actor.use_expln), "clip_mean": float(actor.clip_mean)}
    blob: dict[str, Any] = {
        "format": FORMAT,
        "state_dict": state_dict,
        "obs_shape": list(obs_space.shape),
        "action_low": torch.as_tensor(np.asarray(act_space.low, dtype=np.float32)),
        "action_high": torch.as_tensor(np.asarray(act_space.high, dtype=np.float32)),
        **rebuild,
    }
    buf = io.BytesIO()  # saved through a buffer: the archive's inner name does not depend on the temp file's
    torch.save(blob, buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return sha256_of(path)


def _sbx_actor_state_dict(model) -> tuple[dict[str, Any], list[int]]:
    """sbx's squashed-Gaussian actor (flax Dense_0 .. Dense_{n-1} hidden with ReLU, Dense_n the
    mean, Dense_{n+1} the log std) as the state dict of SB3's `Actor` (latent_pi.{0,2,..}, mu,
    log_std); a flax kernel (in, out) is a torch weight (out, in) transposed."""
    import torch

    params = model.policy.actor_state.params["params"]
    dense = [params[f"Dense_{i}"] for i in range(len(params))]
    assert len(dense) >= 2 and set(params) == {f"Dense_{i}" for i in range(len(dense))}, sorted(params)

    def linear(layer) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(np.array(layer["kernel"], dtype=np.float32).T.copy())  # (out, in)
        return w, torch.from_numpy(np.array(layer["bias"], dtype=np.float32))

    state: dict[str, Any] = {}
    hidden = dense[:-2]
    for i, layer in enumerate(hidden):
        state[f"latent_pi.{2 * i}.weight"], state[f"latent_pi.{2 * i}.bias"] = linear(layer)
    state["mu.weight"], state["mu.bias"] = linear(dense[-2])
    state["log_std.weight"], state["log_std.bias"] = linear(dense[-1])
    return state, [int(np.shape(layer["bias"])[0]) for layer in hidden]


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
