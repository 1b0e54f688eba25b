"""Config strictness: unknown keys, wrong types and missing values are errors naming the key."""

import re
from dataclasses import dataclass, field
from enum import StrEnum

import pytest

from sppd import config
from sppd.config import ConfigError


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    name: str | None = None


@dataclass
class Outer:
    required: int
    inner: Inner = field(default_factory=Inner)
    color: Color = Color.RED
    flags: list[int] = field(default_factory=list)
    on: bool = False


def test_builds_nested_and_coerces_int_to_float():
    cfg = config.build(Outer, {"required": 3, "inner": {"lr": 1, "name": "x"}, "color": "blue", "flags": [1, 2]})
    assert cfg.required == 3 and cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.color is Color.BLUE and cfg.flags == [1, 2] and cfg.inner.steps == 10


@pytest.mark.parametrize(
    "data, key",
    [
        ({"required": 1, "inner": {"lr": 1, "stpes": 3}}, "inner.stpes"),
        ({"required": 1, "bogus": 2}, "bogus"),
        ({"required": "three"}, "required"),
        ({"required": 1, "inner": {"steps": 2.5}}, "inner.steps"),
        ({"required": 1, "color": "green"}, "color"),
        ({"required": 1, "on": "yes"}, "on"),
        ({"required": 1, "flags": [1, "a"]}, "flags[1]"),
        ({"required": True}, "required"),
        ({}, "required"),
        ({"required": "???"}, "required"),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=f"'{key.replace('[', '.').replace(']', '.')}"):
        config.build(Outer, data)


def test_overrides_parse_yaml_scalars_and_nest():
    data = config.apply_overrides(
        {"inner": {"lr": 0.1}}, ["inner.lr=1e-5", "inner.steps=7", "on=true", "flags=[3, 4]"]
    )
    cfg = config.build(Outer, {"required": 0, **data})
    assert cfg.inner.lr == pytest.approx(1e-5) and cfg.inner.steps == 7 and cfg.on is True and cfg.flags == [3, 4]
    with pytest.raises(ConfigError, match="key.sub=value"):
        config.apply_overrides({}, ["noequals"])


def test_inherit_chain_and_cycle(tmp_path):
    base = tmp_path / "base.yaml"
    child = tmp_path / "child.yaml"
    base.write_text("required: 1\ninner:\n  lr: 0.5\n  steps: 3\n")
    child.write_text(f"inherit: {base}\ninner:\n  steps: 9\n")
    cfg = config.load(Outer, str(child))
    assert (cfg.required, cfg.inner.lr, cfg.inner.steps) == (1, 0.5, 9)
    base.write_text(f"inherit: {child}\n")
    with pytest.raises(ConfigError, match="cycle"):
        config.load(Outer, str(child))


def test_unknown_shipped_name_lists_choices():
    with pytest.raises(ConfigError, match="shipped"):
        config.resolve_config_path("no-such-config")


def test_every_shipped_config_loads():
    from sppd.settings import load_run_config

    names = config.shipped_config_names()
    assert {"toy", "toy-tiny", "qwen2.5-7b-base", "llama3.1-8b-instruct", "qwen2.5-7b-instruct"} <= set(names)
    for name in names:
        if name.startswith("toy"):
            cfg = load_run_config(name)
        else:  # real-model recipes: the local folders are the user's to set; a stage needing them asks
            unset = load_run_config(name)  # loads (sppd show-config works) with the folders unset
            assert unset.model.path is None and unset.score.prm_path == ""
            cfg = load_run_config(name, ["model.path=/models/m", "score.prm_path=/models/prm"])
            assert cfg.sample.K == 64 and cfg.sample.C == 2 and cfg.build.step_gap == 0.5
            assert cfg.pipeline.step_dpo.beta == 0.1 and cfg.pipeline.dpo.optimizer == "sgd"
            assert cfg.pipeline.sft.lr == 5e-6 and cfg.pipeline.step_dpo.lr == 1e-5
            assert cfg.pipeline.gammas == [0.1, 0.5, 1.0, 2.0, 5.0] and cfg.eval.max_new_tokens == 2048
            assert cfg.pipeline.sentence_level == ("instruct" not in name)
        assert cfg.sample.K >= 1 and cfg.sample.C >= 1


def test_run_config_dump_round_trips(tmp_path):
    from sppd.settings import RunConfig, load_run_config

    cfg = load_run_config("toy-tiny", ["sample.K=5"])
    path = tmp_path / "resolved.yaml"
    path.write_text(config.dump_yaml(cfg))
    again = config.load(RunConfig, str(path))
    assert again == cfg and again.sample.K == 5


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("eval.sample_score=lsat", "eval.sample_score"),
        ("prm.label=hrad", "prm.label"),
        ("train.mixed_precision=bf61", "train.mixed_precision"),
        ("model.dtype=fp8", "model.dtype"),
        ("train.margin=dynamc", "train.margin"),
        ("pipeline.step_dpo.margin=fix", "pipeline.step_dpo.margin"),
        ("eval.prm=nnoe", "eval.prm"),
        ("score.scorer=skywrok", "score.scorer"),
    ],
)
def test_a_typo_in_a_closed_choice_fails_at_load_naming_the_key(override, key):
    """Before: sample_score was parsed after all generation, 'hrad' silently meant soft labels,
    mixed_precision was checked at train time and an eval.prm typo failed only in the eval stage."""
    from sppd.settings import load_run_config

    bad = override.split("=", 1)[1]
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}': '{bad}' is not one of"):
        load_run_config("toy-tiny", [override])


def test_closed_choices_load_as_enums_and_dump_as_the_same_strings():
    from sppd.settings import load_run_config
    from sppd.types import NO_PRM, DType, MixedPrecision, PRMLabel, SampleScore

    # mixed_precision=no: YAML reads an unquoted no as false, which must still mean "no".
    overrides = ["eval.sample_score=min", "prm.label=hard", "train.mixed_precision=no", "eval.prm=none"]
    cfg = load_run_config("toy-tiny", [*overrides, "model.dtype=bfloat16"])  # the torch spelling is an alias
    assert cfg.eval.sample_score is SampleScore.MIN and cfg.prm.label is PRMLabel.HARD
    assert cfg.train.mixed_precision is MixedPrecision.NO and cfg.eval.prm == NO_PRM
    assert cfg.model.dtype is DType.BF16
    out = config.to_dict(cfg)
    assert (out["eval"]["sample_score"], out["prm"]["label"], out["model"]["dtype"]) == ("min", "hard", "bf16")
