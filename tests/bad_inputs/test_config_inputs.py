"""Bad config keys, values, YAML files and overrides: one line naming the key or file:line, exit 2,
no traceback, and nothing written (the config is checked before any stage starts)."""

from __future__ import annotations

import pytest

from conftest import assert_one_error

BAD_VALUES = [
    # (override, what the error must name)
    ("sample.K=0", "sample.K"),
    ("sample.K=-3", "sample.K"),
    ("sample.C=0", "sample.C"),
    ("sample.max_depth=0", "sample.max_depth"),
    ("sample.max_step_tokens=0", "sample.max_step_tokens"),
    ("sample.temperature=-1", "sample.temperature"),
    ("sample.top_p=0", "sample.top_p"),
    ("sample.top_p=1.5", "sample.top_p"),
    ("sample.selection_temperature=0", "sample.selection_temperature"),
    ("sample.problems_per_shard=0", "sample.problems_per_shard"),
    ("sample.engine_batch_size=0", "sample.engine_batch_size"),
    ("sample.vllm_gpu_memory_utilization=1.2", "sample.vllm_gpu_memory_utilization"),
    ("problems.n=0", "problems.n"),
    ("problems.n=-5", "problems.n"),
    ("problems.max_question_chars=0", "problems.max_question_chars"),
    ("score.mc_rollouts=-1", "score.mc_rollouts"),
    ("score.max_batch_tokens=0", "score.max_batch_tokens"),
    ("prm.lr=0", "prm.lr"),
    ("prm.val_fraction=1", "prm.val_fraction"),
    ("build.pairs_per_parent=0", "build.pairs_per_parent"),
    ("build.step_gap=-0.5", "build.step_gap"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.lr=-1", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.epochs=0", "train.epochs"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.warmup_ratio=2", "train.warmup_ratio"),
    ("train.beta=0", "train.beta"),
    ("train.label_smoothing=0.5", "train.label_smoothing"),
    ("train.momentum=1", "train.momentum"),
    ("train.max_length=0", "train.max_length"),
    ("eval.n_problems=-1", "eval.n_problems"),
    ("eval.n_samples=-2", "eval.n_samples"),
    ("eval.temperature=-0.1", "eval.temperature"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens"),
    ("eval.grade_timeout_s=0", "eval.grade_timeout_s"),
    ("eval.benchmarks=[]", "eval.benchmarks"),
    ("pipeline.seeds=0", "pipeline.seeds"),
    ("pipeline.gammas=[1.0,-1.0]", "pipeline.gammas"),
    ("pipeline.step_dpo.lr=-1", "pipeline.step_dpo.lr"),
    ("threads=-1", "threads"),
    # types, names and shapes
    ("sample.K=abc", "sample.K"),
    ("sample.k=3", "sample.k"),
    ("train.objective=foo", "train.objective"),
    ("score.scorer=nope", "score.scorer"),
    ("sample.K", "sample.K"),  # no "="
    ("sample.K=[1,", "sample.K=[1,"),  # malformed YAML value
    ("train.lr=!!python/object/apply:os.system [echo]", "train.lr"),
]


@pytest.mark.parametrize(("override", "key"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_its_key(cli, tmp_path, override, key):
    code, _, err = cli("sample", "-c", "toy-tiny", f"run_dir={tmp_path / 'run'}", override)
    assert_one_error(code, err, key)
    assert code == 2 and not (tmp_path / "run").exists()  # nothing started, nothing written


BAD_YAML = [
    # (file content as bytes, what the error must name besides the file)
    (b"sample:\n  K: 4\n  C: [2\n", ":4:"),  # malformed: unclosed flow sequence, reported where it ends
    (b"sample:\n  K: !!python/object/apply:os.system ['echo hi']\n", ":2:"),  # a python tag
    (b"train:\n  lr: 1.0e-3\n  batch_size: 4\n  lr: 1.0e-2\n", "duplicate key 'lr'"),
    (b"sample:\n  K: 4\n# caf\xe9\n", ":3: not UTF-8"),
    (b"- just\n- a list\n", "top level must be a mapping"),
    (b"inherit: toy-tiny\nsample:\n  K: 0\n", "sample.K"),  # inherited file, bad value
    (b"sample:\n\tK: 4\n", ":2:"),  # a tab
]


@pytest.mark.parametrize(("content", "needle"), BAD_YAML, ids=[f"yaml{i}" for i in range(len(BAD_YAML))])
def test_a_bad_yaml_file_is_one_line_naming_file_and_line(cli, tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    code, _, err = cli("show-config", "-c", path)
    assert_one_error(code, err, needle)


def test_an_inheritance_cycle_and_missing_files_are_named(cli, tmp_path):
    (tmp_path / "a.yaml").write_text(f"inherit: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"inherit: {tmp_path / 'a.yaml'}\n")
    assert_one_error(*cli("show-config", "-c", tmp_path / "a.yaml")[::2], "cycle")
    assert_one_error(*cli("show-config", "-c", tmp_path / "nope.yaml")[::2], "nope.yaml")
    assert_one_error(*cli("show-config", "-c", "no-such-shipped-config")[::2], "no-such-shipped-config")


def test_debug_shows_the_traceback(cli):
    code, _, err = cli("--debug", "show-config", "-c", "toy-tiny", "sample.K=0")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("sppd: config error:")


def test_valid_edge_values_still_load(cli):
    """The constraints reject what cannot work, not what is merely unusual."""
    ok = ["sample.temperature=0", "eval.n_problems=0", "eval.n_samples=0", "problems.n=null", "train.max_steps=0"]
    code, out, err = cli("show-config", "-c", "toy-tiny", *ok)
    assert code == 0, err
    assert "temperature: 0" in out


def test_through_a_real_process_the_error_is_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import sppd

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"sample:\n  K: 4\n  K: 5\n")
    env = {**os.environ, "PYTHONPATH": str(Path(sppd.__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "sppd", "sample", "-c", str(bad), f"run_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_error(proc.returncode, proc.stderr, f"{bad}:3: duplicate key 'K'")
