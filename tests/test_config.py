"""The one config reader (`m3dt.dataclass_io`) and the configs built with it: an unknown
key or a wrong type is one `ConfigError` naming the key (and the file, from the CLIs);
`train.harmo` is a typed `HarmoConfig`, checked when the config is built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from m3dt.__main__ import main
from m3dt.config import ConfigError as ReExported
from m3dt.config import TrainConfig
from m3dt.data.collect import CollectConfig
from m3dt.data.sampler import SamplerConfig
from m3dt.dataclass_io import ConfigError, check_keys, from_mapping
from m3dt.experts.config import ExpertConfig
from m3dt.models.harmodt import HarmoConfig


@dataclass(frozen=True)
class Inner:
    n: int = 1
    sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        assert self.n >= 0, f"n must be >= 0, got {self.n}"


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"
    rate: float | None = None


def test_from_mapping_builds_nested_sections_and_tuples():
    out = from_mapping(Outer, {"inner": {"n": 2, "sizes": [3, 4]}, "rate": 1}, "sec")
    assert out == Outer(Inner(2, (3, 4)), "x", 1)
    assert from_mapping(Outer, None, "sec") == Outer()
    built = from_mapping(Outer, {"inner": {"n": 5}}, "sec", nested={"inner": lambda v, where: Inner(n=v["n"] * 2)})
    assert built.inner.n == 10


@pytest.mark.parametrize("d, message", [
    ({"nme": "y"}, r"unknown key\(s\) \['sec.nme'\]; valid: \['inner', 'name', 'rate'\]"),
    ({"inner": {"m": 1}}, r"\['sec.inner.m'\]; valid: \['n', 'sizes'\]"),
    ({"inner": {"n": "two"}}, "sec.inner.n must be an integer, got 'two'"),
    ({"inner": {"sizes": [1, "a"]}}, "sec.inner.sizes must be a list"),
    ({"inner": {"n": -1}}, r"sec.inner: n must be >= 0, got -1"),
    ({"inner": 3}, "sec.inner must be a mapping of Inner fields"),
    ({"rate": True}, "sec.rate must be a number or null"),
])
def test_from_mapping_errors_name_the_key(d, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, d, "sec")


def test_check_keys():
    check_keys(Outer, {"name": "a", "extra": 1}, "sec", also=("extra",))
    with pytest.raises(ConfigError, match="sec must be a mapping, got list"):
        check_keys(Outer, [1], "sec")  # type: ignore[arg-type]
    assert issubclass(ConfigError, ValueError) and ReExported is ConfigError


@pytest.mark.parametrize("build, key", [
    (lambda: TrainConfig.from_dict({"model": {"widht": 3}}), "train.model.widht"),
    (lambda: TrainConfig.from_dict({"modle": {}}), "train.modle"),
    (lambda: TrainConfig.from_dict({"loop": {"stepz": 3}}), "train.loop.stepz"),
    (lambda: ExpertConfig.from_dict({"sac_stepz": 1}), "data.experts.sac_stepz"),
    (lambda: CollectConfig.from_dict({"episode": 1}), "data.collect.episode"),
    (lambda: SamplerConfig.from_dict({"batchsize": 1}), "train.sampler.batchsize"),
])
def test_every_config_names_an_unknown_key(build, key):
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) \['{key}'\]; valid: "):
        build()


def test_cli_errors_name_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experts: {sac_stepz: 1}\ncollect: {episode: 1}\n")
    assert main(["data", "train-expert", "reach-v2", "--config", str(bad), "--expert-root", str(tmp_path)]) == 1
    assert f"{bad}:experts.sac_stepz" in capsys.readouterr().err
    assert main(["data", "collect", "reach-v2", "--config", str(bad), "--out-dir", str(tmp_path)]) == 1
    assert f"{bad}:collect.episode" in capsys.readouterr().err
    train = tmp_path / "train.yaml"
    train.write_text("train: {harmo: {mask_intervl: 2}}\n")
    with pytest.raises(SystemExit, match=rf"config error \({train}\): .*train.harmo.mask_intervl"):
        main(["train", "--stage", "harmodt", "--tasks", "reach-v2", "--config", str(train), "--out", str(tmp_path)])


def test_harmo_is_a_typed_section():
    cfg = TrainConfig.from_dict({"harmo": {"mask_interval": 2, "forward_exempt": ["embed"]}})
    assert isinstance(cfg.harmo, HarmoConfig)
    assert cfg.harmo == HarmoConfig(mask_interval=2, forward_exempt=("embed",))
    assert TrainConfig.from_dict({}).harmo == HarmoConfig() == TrainConfig().harmo
    assert cfg.replace(harmo={"gamma": 3.0}).harmo == dataclasses.replace(cfg.harmo, gamma=3.0)
    assert TrainConfig.from_stored(cfg.as_dict()) == cfg  # a new checkpoint's meta


def test_old_harmo_dicts_still_load():
    new = TrainConfig.from_dict({"harmo": {"mask_interval": 2}})
    old_meta = new.as_dict()
    old_meta["harmo"] = {"mask_interval": 2}  # older code stored only the keys given
    assert TrainConfig.from_stored(old_meta) == new
    old_meta["harmo"] = {}
    assert TrainConfig.from_stored(old_meta).harmo == HarmoConfig()
    assert TrainConfig(harmo={"mask_interval": 2}).harmo == new.harmo  # type: ignore[arg-type]


@pytest.mark.parametrize("harmo, message", [
    ({"mask_intervl": 2}, r"unknown key\(s\) \['train.harmo.mask_intervl'\]"),
    ({"sparsity": "dense"}, "train.harmo.sparsity must be a number"),
    ({"sparsity": 1.5}, r"train.harmo: harmo.sparsity must be in \[0, 1\)"),
    ({"anneal": "linear"}, "harmo.anneal must be one of"),
    (["sparsity"], "train.harmo must be a mapping"),
])
def test_a_bad_harmo_key_fails_when_the_config_is_built(harmo, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"harmo": harmo})
