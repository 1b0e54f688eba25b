"""One staleness mechanism: config fields declare whether they affect output (``sppd.digest``), and
stage fingerprints, the toy base-model hash and the reference-cache key all follow that declaration."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from sppd import digest
from sppd.io import StageDir
from sppd.settings import RunConfig, load_run_config
from sppd.stages import build, score, train
from sppd.stages import eval as eval_stage
from sppd.stages import sample as sample_stage
from sppd.toy.pretrain import ToyPretrainConfig, config_hash
from sppd.train.objectives import get_objective
from sppd.train.ref_cache import cache_key

# Every field declared not to affect output, and how. A new entry must be a deliberate choice:
# a field wrongly here would let a stage reuse a folder made with another value of it.
NON_OUTPUT = {
    "run_dir": "location",
    "threads": "runtime",
    "toy.num_threads": "runtime",
    "model.path": "location",
    "problems.allow_test_split": "runtime",  # a permission to read a test split, not an input
    "problems.max_question_chars": "runtime",  # refuses overlong problems; never changes what is written
    "sample.out": "location",
    "sample.vllm_gpu_memory_utilization": "runtime",  # how much of the GPU vLLM may take, not what it samples
    "score.prm_path": "location",
    "score.max_batch_tokens": "runtime",
    "score.mc_policy": "location",
    "score.trees": "location",
    "score.out": "location",
    "prm.trees": "location",
    "prm.out": "location",
    "prm.init": "location",  # an input folder: the prm_train fingerprint counts it by folder_id
    "build.trees": "location",
    "build.out": "location",
    **{
        f"{section}.{name}": kind
        for section in ("train", "pipeline.sft", "pipeline.dpo", "pipeline.step_dpo")
        for name, kind in {
            "data": "location",
            "init": "location",
            "ref": "location",
            "out": "location",
            "gradient_checkpointing": "runtime",
            "save_every": "runtime",
            "log_every": "runtime",
            "l2_every": "runtime",  # when the distance from the start is measured, not the weights
            "trackers": "runtime",
        }.items()
    },
    "eval.prm_path": "location",
    "eval.model": "location",
    "eval.grade_workers": "runtime",  # how fast answers are graded, never a verdict
    "pipeline.launcher": "runtime",  # which process runs a stage (accelerate launch gives the same report)
    "eval.out": "location",
}


def test_every_non_output_field_is_deliberately_declared():
    fields = digest.declared_fields(RunConfig)
    declared = {key: f.metadata[digest.KIND] for key, f in fields.items() if not digest.affects_output(f)}
    assert declared == NON_OUTPUT
    # output folders never count; speed knobs that split a random stream always do
    assert all(key in declared for key in fields if key.endswith(".out"))
    for key in ("sample.engine_batch_size", "sample.problems_per_shard", "eval.batch_size", "train.batch_size"):
        assert key in fields and key not in declared


def _cfg(tmp_path: Path, *overrides: str) -> RunConfig:
    # model.path keeps the toy base model out of it (no pretraining)
    return load_run_config("toy-tiny", [f"run_dir={tmp_path}", f"model.path={tmp_path / 'policy'}", *overrides])


def _train_digest(cfg: RunConfig) -> str:
    spec = get_objective(cfg.train.objective)
    return train.fingerprint(cfg, spec, train.resolve_paths(cfg, spec)).digest


STAGES = {
    "sample": lambda cfg: sample_stage.fingerprint(cfg).digest,
    "score": lambda cfg: score.fingerprint(cfg, StageDir(Path(cfg.run_dir) / "trees")).digest,
    "build": lambda cfg: build.fingerprint(cfg, StageDir(Path(cfg.run_dir) / "scored"), "step_pairs").digest,
    "train": _train_digest,
    "eval": lambda cfg: eval_stage.fingerprint(cfg).digest,
}


@pytest.mark.parametrize(
    "stage, override, counts",
    [
        ("sample", "threads=3", False),
        ("sample", "sample.out=/elsewhere", False),
        ("sample", "sample.temperature=0.5", True),
        ("sample", "sample.engine_batch_size=7", True),  # splits the engine's random stream
        ("score", "score.max_batch_tokens=99", False),
        ("score", "score.out=/elsewhere", False),
        ("score", "score.packing=path", True),
        ("build", "build.out=/elsewhere", False),
        ("build", "build.step_gap=0.1", True),
        ("train", "train.log_every=9", False),
        ("train", "train.save_every=3", False),
        ("train", "train.gradient_checkpointing=true", False),
        ("train", "train.trackers=[tensorboard]", False),
        ("train", "train.lr=0.5", True),
        ("train", "train.batch_size=3", True),
        ("eval", "eval.out=/elsewhere", False),
        ("eval", "eval.batch_size=3", True),
        ("eval", "eval.grade_timeout_s=1.0", True),
    ],
)
def test_only_output_fields_change_a_stage_fingerprint(tmp_path, stage, override, counts):
    digest_of = STAGES[stage]
    assert (digest_of(_cfg(tmp_path, override)) != digest_of(_cfg(tmp_path))) is counts


@dataclass
class _Inner:
    rate: float = 1.0
    workers: int = digest.runtime(1)


@dataclass
class _Root:
    inner: _Inner = field(default_factory=_Inner)
    where: str = digest.location("")


def test_a_runtime_field_is_skipped_without_any_exclude_list():
    data = {"inner": {"rate": 2.0, "workers": 8}, "where": "/x"}
    assert digest.select(_Root, data, ["inner", "where"]) == {"inner.rate": 2.0}
    assert digest.output_values(_Root(_Inner(2.0, 8), "/x")) == {"inner": {"rate": 2.0}}


# The toy base model's cache key, measured with the code before this mechanism existed. It must
# never change unless the toy model itself changes: it names every user's cached base model.
# The default (v1) world's hash is unchanged; the shipped toy configs moved to the v2 world, then to
# v3 (toy-tiny keeps v2's short questions: its hash is unchanged).
TOY_HASH = "a26e4207a12e"
TOY_V3_HASH = "334d459643b5"
TOY_TINY_HASH = "5c3055245344"


def test_toy_hash_is_the_one_cached_base_models_are_named_by():
    assert config_hash(ToyPretrainConfig()) == TOY_HASH
    assert config_hash(load_run_config("toy").toy) == TOY_V3_HASH
    assert config_hash(load_run_config("toy-tiny").toy) == TOY_TINY_HASH
    v1 = [
        "toy.world.error_model=v1",
        "toy.world.corrupt_medium_rate=0",
        "toy.world.terse_rate=0",
        "toy.world.min_ops=2",
        "toy.world.max_ops=4",
        "toy.world.corrupt_hard_rate=0.6",
        "toy.world.corrupt_easy_rate=0.02",
        "toy.max_minutes=20",
    ]
    assert config_hash(load_run_config("toy", v1).toy) == TOY_HASH


@pytest.mark.parametrize(
    "change, counts",
    [
        ({"num_threads": 3}, False),
        ({"steps": 7}, True),
        ({"eval_batch_size": 7}, True),  # greedy eval batches pad differently: the curve may move
        ({"max_minutes": 1.0}, True),
    ],
)
def test_toy_hash_follows_the_declaration(change, counts):
    base = ToyPretrainConfig()
    assert (config_hash(replace(base, **change)) != config_hash(base)) is counts
    world = replace(base, world=replace(base.world, corrupt_hard_rate=0.1))
    assert config_hash(world) != config_hash(base)  # nested sections count too


@pytest.mark.parametrize(
    "override, counts",
    [
        ("train.log_every=9", False),
        ("train.lr=0.5", False),  # the reference model does not train
        ("train.max_length=77", True),
        ("prompt.system=hi", True),
        ("train.prefix_sharing=false", True),
    ],
)
def test_reference_cache_key_follows_the_declaration(tmp_path, override, counts):
    ref = tmp_path / "ref"
    ref.mkdir()

    def key(*overrides: str) -> str:
        cfg = _cfg(tmp_path, "train.objective=step_dpo", *overrides)
        return cache_key([], ref, train.ref_cache_settings(cfg, "no"))

    assert (key(override) != key()) is counts
    assert cache_key([], ref, train.ref_cache_settings(_cfg(tmp_path), "bf16")) != cache_key(
        [], ref, train.ref_cache_settings(_cfg(tmp_path), "no")
    )
