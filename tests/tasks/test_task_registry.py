"""Tasks: names and aliases, explicit splits, the test-split guard, judges, `sppd sources`."""

from __future__ import annotations

import json
import re

import pytest

from sppd.config import ConfigError
from sppd.settings import load_run_config
from sppd.tasks import benchmark_task, find, resolve, training_task

GSM8K_TRAIN_FIRST = "Natalia sold clips to 48 of her friends in April"  # benchdata/gsm8k/train.jsonl line 1
GSM8K_TEST_FIRST = "Janet’s ducks lay 16 eggs per day"  # benchdata/gsm8k/test.jsonl line 1


def cfg(*overrides: str):
    return load_run_config("toy-tiny", list(overrides))


def training_problems(*overrides: str):
    c = cfg(*overrides)
    task, split = training_task(c)
    return task.problems(split, c.problems.n, seed=c.seed)


def test_gsm8k_training_prompts_come_from_the_train_file():
    for split in ("train", ""):  # explicit, and the default
        problems = training_problems("problems.source=gsm8k", f"problems.split={split}", "problems.n=3")
        assert [p.id for p in problems] == ["gsm8k_train/0", "gsm8k_train/1", "gsm8k_train/2"]
        assert problems[0].question.startswith(GSM8K_TRAIN_FIRST)


def test_a_test_split_is_refused_as_training_prompts_unless_allowed():
    with pytest.raises(ConfigError, match=r"problems\.split.*problems\.allow_test_split=true") as err:
        training_problems("problems.source=gsm8k", "problems.split=test")
    assert "\n" not in str(err.value)
    problems = training_problems("problems.source=gsm8k", "problems.split=test", "problems.allow_test_split=true")
    assert problems[0].id == "gsm8k/0" and problems[0].question.startswith(GSM8K_TEST_FIRST)
    with pytest.raises(ConfigError, match="allow_test_split"):
        training_problems("problems.source=toy", "problems.split=test")


def test_a_test_only_benchmark_is_refused_as_training_prompts_unless_allowed():
    for source in ("math500", "ocw", "minerva_math"):
        with pytest.raises(ConfigError, match="allow_test_split"):
            training_problems(f"problems.source={source}")
    problems = training_problems("problems.source=math500", "problems.allow_test_split=true", "problems.n=2")
    assert len(problems) == 2 and problems[0].id.startswith("math500/")


def test_unknown_source_and_split_are_one_line_errors_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'problems.source'.*'gsm9k'.*toy, gsm8k, math,.*mix") as err:
        training_problems("problems.source=gsm9k")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"'problems.split'.*'gsm8k' has no split 'val'; its splits: train, test"):
        training_problems("problems.source=gsm8k", "problems.split=val")
    with pytest.raises(ConfigError, match=r"'problems.split'.*gsm8k's 'train' split"):
        training_problems("problems.source=gsm8k_train", "problems.split=test", "problems.allow_test_split=true")
    with pytest.raises(ConfigError, match=r"'eval.benchmarks'.*unknown source 'gsm9k'"):
        benchmark_task(cfg(), "gsm9k")


def test_toy_problems_are_the_generator_s_for_the_same_seed():
    from sppd.toy.world import generate_problems

    c = cfg("problems.split=val")
    want = generate_problems(c.toy.world, "val", c.problems.n, c.seed)
    assert training_problems("problems.split=val") == want
    assert training_problems()[0].id == "toy-train-000000"  # the default split is train


def test_eval_names_read_the_test_split_unless_they_pin_one():
    c = cfg()
    assert [(t.name, s) for t, s in (benchmark_task(c, n) for n in ("toy", "toy-val", "gsm8k", "gsm8k_train"))] == [
        ("toy", "test"),
        ("toy", "val"),
        ("gsm8k", "test"),
        ("gsm8k", "train"),
    ]
    assert benchmark_task(c, "ocw")[0].problems("test")[0].id.startswith("ocw/")
    assert benchmark_task(c, "mix")[1] == "train"  # a train-only task evaluates on its one split


def test_a_jsonl_file_is_one_split_named_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"q": f"{i}+1", "a": str(i + 1)}) + "\n" for i in range(3)))
    fields = ["problems.question_field=q", "problems.answer_field=a"]
    problems = training_problems(f"problems.source={path}", "problems.n=null", *fields)
    assert [p.id for p in problems] == ["mine/0", "mine/1", "mine/2"] and problems[2].gold == "3"
    task, split = benchmark_task(cfg(*fields), str(path))
    assert split == "file" and task.problems(split)[1].question == "1+1"
    with pytest.raises(ConfigError, match="its splits: file"):
        training_problems(f"problems.source={path}", "problems.split=train")


def test_only_the_toy_task_has_a_step_checker_and_exact_answers():
    from sppd.judging import toy_judge, toy_process_judge
    from sppd.records import Problem

    toy, _ = resolve("toy")
    assert toy.process_judge is toy_process_judge and toy.outcome_judge() is toy_judge and toy.synthetic
    assert not toy.equivalent("12", "12.0")  # integers: only identical canonical strings agree
    p = Problem(id="p", question="2+3*4", gold="14", source="toy")
    two_wrong_steps = [(p, "Step 1: 3*4=13\nStep 2: 2+13=14\nThe answer is \\boxed{14}")]
    assert toy.outcome_judge()(two_wrong_steps) == [("14", True)]
    assert toy.process_judge(two_wrong_steps) == [("14", False)]
    for name in ("gsm8k", "math", "mix", "math500", "olympiadbench"):
        task, _ = resolve(name)
        assert task.process_judge is None and not task.synthetic and task.config_keys == ()
        assert task.equivalent("0.5", "1/2")  # math grading, not string identity
    assert find("toy").process_judge is not None
    assert find("gsm8k_train").process_judge is None and find("some-file-stem") is None


def test_the_toy_step_checker_judges_each_step_of_an_unfinished_path():
    toy, _ = resolve("toy")
    # no answer line yet: the process judge calls any such path wrong, the step checker judges the step
    assert toy.step_checker("2+3*4", ["Step 1: 3*4=12, 2+12"]) == [True]
    assert toy.process_judge is not None and resolve("gsm8k")[0].step_checker is None
    # a wrong step, then a right one from the state it wrote, then its answer
    assert toy.step_checker("2+3*4", ["Step 1: 3*4=13, 2+13", "Step 2: 2+13=15", "The answer is \\boxed{15}"]) == [
        False,
        True,
        True,
    ]
    # a step of two lines is right only when both are; an empty step is wrong
    two_lines = ["Step 1: 3*4=12, 2+12", "Step 2: 2+12=14\nThe answer is \\boxed{15}", ""]
    assert toy.step_checker("2+3*4", two_lines) == [True, False, False]


def test_sample_and_pipeline_refuse_test_prompts_before_any_work(tmp_path):
    from sppd.stages import pipeline, sample

    bad = cfg(f"run_dir={tmp_path}", "problems.source=math500", "model.path=/nonexistent")
    with pytest.raises(ConfigError, match="allow_test_split"):
        sample.main(bad)
    with pytest.raises(ConfigError, match="allow_test_split"):
        pipeline.Pipeline(bad)
    with pytest.raises(ConfigError, match="pipeline.val_benchmark"):
        pipeline.Pipeline(cfg(f"run_dir={tmp_path}", "pipeline.val_benchmark=toy-vall"))


def test_in_run_prm_is_a_registry_fact():
    from sppd.prm.registry import trained_in_run

    assert trained_in_run("toy") and not trained_in_run("skywork") and not trained_in_run("mc")


def test_real_recipes_sample_the_paper_s_train_mix():
    from sppd import config

    for name in config.shipped_config_names():
        if name.startswith(("qwen", "llama")):
            c = load_run_config(name, ["model.path=/models/m", "score.prm_path=/models/prm"])
            task, split = training_task(c)
            assert (task.name, split, c.problems.n) == ("mix", "train", 10000), name


def test_sources_lists_every_task_with_splits_and_counts(capsys):
    from sppd.cli import main

    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^gsm8k\s+train 7473\s+test 1319$", out, re.M)
    assert re.search(r"^math\s+train 7500$", out, re.M)
    assert re.search(r"^math500\s+test 500$", out, re.M)
    assert re.search(r"^mix\s+train 10000$", out, re.M)
    assert re.search(r"^toy\s+train -\s+val -\s+test -\s+generated", out, re.M)
    for name in ("gaokao2023en", "ocw", "olympiadbench", "<path>.jsonl", "toy-val = toy/val"):
        assert name in out
