"""Benchmark loaders: shipped counts, gold spot checks, malformed files, the training mix."""

import dataclasses
import json
from collections import Counter

import pytest

from sppd.eval.benchmarks import (
    _PACKAGED,
    BenchmarkFormatError,
    BenchmarkProblem,
    _load_packaged,
    available_benchmarks,
    load_benchmark,
    load_jsonl_problems,
    register_benchmark,
    training_prompt_mix,
    unwinnable_problems,
)
from sppd.eval.grading import unwinnable_reason
from sppd.stages.eval import split_unwinnable
from sppd.tasks import resolve

EXPECTED_COUNTS = {
    "gsm8k": 1319,
    "math500": 500,
    "gaokao2023en": 385,
    "ocw": 272,
    "olympiadbench": 675,
    "gsm8k_train": 7473,
    "math_train": 7500,
}


@pytest.mark.parametrize(("name", "count"), EXPECTED_COUNTS.items())
def test_shipped_benchmark_counts_and_unique_ids(name, count):
    problems = load_benchmark(name)
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    assert all(p.source == name and p.question for p in problems)


def test_count_mismatch_is_a_clear_error():
    ocw = next(spec for spec in _PACKAGED if spec.name == "ocw")
    with pytest.raises(ValueError, match=r"'ocw': expected 273 problems, found 272"):
        _load_packaged(dataclasses.replace(ocw, count=273))


def test_available_benchmarks_lists_the_paper_sets():
    assert set(EXPECTED_COUNTS) <= set(available_benchmarks())


def test_unknown_benchmark_names_the_choices():
    with pytest.raises(KeyError, match="math500"):
        load_benchmark("math5000")


def test_gold_spot_checks():
    gsm8k = load_benchmark("gsm8k")
    assert (gsm8k[0].id, gsm8k[0].gold) == ("gsm8k/0", "18")  # Janet's ducks
    assert "," not in "".join(p.gold for p in gsm8k)  # 14 golds had thousands commas
    math500 = {p.id: p.gold for p in load_benchmark("math500")}
    assert math500["math500/test/precalculus/807.json"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    ocw = load_benchmark("ocw")
    assert (ocw[0].id, ocw[0].gold) == ("ocw/0", "1.6")
    olympiad = {p.id: p.gold for p in load_benchmark("olympiadbench")}
    assert olympiad["olympiadbench/1606"] == "2"
    assert "69,84" in olympiad.values()  # "$69$,$84$"
    assert not any("$" in gold for gold in olympiad.values())
    gaokao = load_benchmark("gaokao2023en")
    assert gaokao[0].gold == "\\{x|-2\\leq x < 1\\}"
    assert "48, 384" in {p.gold for p in gaokao}
    math_train = {p.id: p.gold for p in load_benchmark("math_train")}
    assert math_train["math_train/train/algebra/24014.json"] == "2"  # "\boxed 2"
    assert math_train["math_train/train/algebra/25040.json"] == "9"


def _write(tmp_path, lines):
    path = tmp_path / "user.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unwinnable_problems_are_flagged_with_a_reason():
    flagged = {p.id: p.unwinnable for p in unwinnable_problems("gaokao2023en")}
    assert flagged == {"gaokao2023en/167": "empty gold", "gaokao2023en/192": "empty gold"}
    for name in ("gsm8k", "math500", "ocw", "olympiadbench"):
        assert unwinnable_problems(name) == []
    assert all(p.unwinnable == "" for p in load_benchmark("math500"))


def test_unwinnable_reason():
    assert unwinnable_reason("") == unwinnable_reason(" $ $ ") == "empty gold"
    assert unwinnable_reason("1" * 1001) == unwinnable_reason("1" * 5000) == "gold longer than 1000 chars"
    assert unwinnable_reason("2**3") == "gold uses Python's ** power"
    assert unwinnable_reason("\\frac{1}{2}") == unwinnable_reason("4.5e33") == ""


def test_gaokao_golds_lose_bare_units():
    gaokao = {p.id: p.gold for p in load_benchmark("gaokao2023en")}
    assert [gaokao[f"gaokao2023en/{i}"] for i in (116, 137, 144, 147)] == ["20", "36\\sqrt{7}", "22.1", "576\\pi"]
    assert gaokao["gaokao2023en/243"] == "2s"  # "in terms of s": a variable, not seconds


def test_eval_leaves_unwinnable_problems_out():
    problems = resolve("gaokao2023en")[0].problems("test")
    keep, unwinnable = split_unwinnable(problems)
    assert [p.id for p in unwinnable] == ["gaokao2023en/167", "gaokao2023en/192"]
    assert unwinnable[0].meta == {"unwinnable": "empty gold"}
    assert len(keep) == 383 and all(p.gold for p in keep)


def test_generic_jsonl_loader_with_custom_fields(tmp_path):
    path = _write(
        tmp_path,
        [
            json.dumps({"q": "1+1?", "a": "$2$.", "key": "p1"}),
            "",
            json.dumps({"q": "Half?", "a": 0.5, "key": 7}),
        ],
    )
    problems = load_jsonl_problems(path, question_field="q", answer_field="a", id_field="key")
    assert problems == [
        BenchmarkProblem("user/p1", "1+1?", "2", "user"),
        BenchmarkProblem("user/7", "Half?", "0.5", "user"),
    ]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"answer": "2"}', "question", "missing"),
        ('{"question": "q"}', "answer", "missing"),
        ('{"question": 3, "answer": "2"}', "question", "expected a string"),
        ('{"question": "q", "answer": ["2"]}', "answer", "expected a string or a number"),
        ('{"question": "q", "answer": "2"', None, "invalid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
    ],
)
def test_malformed_line_names_file_line_and_field(tmp_path, line, field, message):
    good = json.dumps({"question": "ok", "answer": "1"})
    path = _write(tmp_path, [good, good, line])
    with pytest.raises(BenchmarkFormatError) as info:
        load_jsonl_problems(path)
    text = str(info.value)
    assert text.startswith(f"{path}:3:")
    assert message in text
    if field is not None:
        assert f"field {field!r}" in text


def test_gold_extraction_errors_name_the_field(tmp_path):
    from sppd.eval.answers import gsm8k_gold

    path = _write(tmp_path, [json.dumps({"question": "q", "answer": "no marker"})])
    with pytest.raises(BenchmarkFormatError, match=r"user.jsonl:1: field 'answer': .*####"):
        load_jsonl_problems(path, gold_fn=gsm8k_gold)


def test_register_benchmark_adds_a_loader_once():
    problems = [BenchmarkProblem("toy/0", "2+2", "4", "toy-test-fixture")]
    register_benchmark("toy-test-fixture", lambda: problems)
    assert load_benchmark("toy-test-fixture") == problems
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark("toy-test-fixture", lambda: problems)


def test_training_prompt_mix_is_deterministic_with_the_paper_proportions():
    mix = training_prompt_mix(n=1000, gsm8k_frac=0.4, seed=3)
    assert len(mix) == 1000
    assert Counter(p.source for p in mix) == {"gsm8k_train": 400, "math_train": 600}
    assert len({p.id for p in mix}) == 1000  # drawn without replacement
    again = training_prompt_mix(n=1000, gsm8k_frac=0.4, seed=3)
    assert [p.id for p in again] == [p.id for p in mix]
    assert [p.id for p in training_prompt_mix(n=1000, seed=4)] != [p.id for p in mix]
    sources = [p.source for p in mix[:100]]
    assert 0 < sources.count("gsm8k_train") < 100  # shuffled, not 400 GSM8K then 600 MATH
    assert all(p.gold for p in mix)


def test_training_prompt_mix_default_size_and_limits():
    mix = training_prompt_mix()
    assert len(mix) == 10000
    assert Counter(p.source for p in mix)["gsm8k_train"] == 4000
    with pytest.raises(ValueError, match="only 7473"):
        training_prompt_mix(n=20000)
    with pytest.raises(ValueError):
        training_prompt_mix(gsm8k_frac=1.5)
