"""Contract tests every HF PRM adapter must pass, run on tiny random models of each family."""

from __future__ import annotations

import pytest
import torch
import transformers
from prm_tiny_hf import MAKERS

from sppd.prm.base import PRMInput, TokenLevelPRM, build_prm

ADAPTERS = sorted(MAKERS)

# different question lengths and step counts, so a batch needs padding
ITEMS = [
    PRMInput("1+1?", ["a=2", "so 2"]),
    PRMInput("What is 12*(3+4)?", ["3+4=7", "12*7=84", "The answer is 84"]),
    PRMInput("x?", ["y"]),
    PRMInput("Compute 2^10 minus 24.", ["2^10 = 1024", "1024 - 24 = 1000", "check: ok", "1000"]),
    PRMInput("Is 7 prime?", ["7 has no divisor but 1 and 7", "yes"]),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("prm_folders")
    return {name: make(root / name).folder for name, make in MAKERS.items()}


@pytest.fixture(scope="module")
def prms(folders):
    return {name: build_prm(name, path=folders[name], device="cpu") for name in ADAPTERS}


@pytest.mark.parametrize("name", ADAPTERS)
def test_one_score_per_step_in_the_unit_interval(prms, name):
    prm = prms[name]
    assert isinstance(prm, TokenLevelPRM) and prm.name == name
    scores = prm.score(ITEMS)
    assert [len(s) for s in scores] == [len(item.steps) for item in ITEMS]
    flat = [value for item_scores in scores for value in item_scores]
    assert all(0.0 <= value <= 1.0 for value in flat)
    assert len({round(value, 6) for value in flat}) > len(flat) // 2  # not a constant


@pytest.mark.parametrize("name", ADAPTERS)
def test_batched_scores_equal_one_at_a_time_scores(prms, name):
    prm = prms[name]
    lengths = {len(prm.encode(item).input_ids) for item in ITEMS}
    assert len(lengths) == len(ITEMS)  # all lengths differ: right padding is exercised
    batched = prm.score(ITEMS)
    for item, item_scores in zip(ITEMS, batched):
        (alone,) = prm.score([item])
        assert alone == pytest.approx(item_scores, abs=1e-5)


@pytest.mark.parametrize("name", ADAPTERS)
def test_small_token_budget_splits_batches_without_changing_scores(folders, prms, name):
    tight = build_prm(name, path=folders[name], device="cpu", batch_size=3, max_batch_tokens=150)
    expected = prms[name].score(ITEMS)
    for got, want in zip(tight.score(ITEMS), expected):
        assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("name", ADAPTERS)
def test_an_item_without_steps_gets_no_scores(prms, name):
    scores = prms[name].score([PRMInput("q?", []), ITEMS[0]])
    assert scores[0] == [] and len(scores[1]) == 2


@pytest.mark.parametrize("name", ADAPTERS)
def test_trust_remote_code_is_off_unless_asked(folders, monkeypatch, name):
    calls = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained

        def spy(*args, _original=original, **kwargs):
            calls.append(kwargs)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    build_prm(name, path=folders[name], device="cpu")
    assert calls and all(kw["trust_remote_code"] is False for kw in calls)
    assert all(kw["local_files_only"] is True for kw in calls)
    calls.clear()
    build_prm(name, path=folders[name], device="cpu", trust_remote_code=True)
    assert calls and all(kw["trust_remote_code"] is True for kw in calls)


@pytest.mark.parametrize("name", ADAPTERS)
def test_token_scores_honour_a_tree_shaped_mask(prms, name):
    """Two paths that share a prefix, packed into one row, score as they do alone.

    This is the hook the scoring stage uses to process every distinct token of a tree once.
    """
    prm = prms[name]
    first, second = PRMInput("1+1?", ["a=2", "so 2"]), PRMInput("1+1?", ["a=2", "no, 3"])
    enc_a, enc_b = prm.encode(first), prm.encode(second)
    shared = 0
    while enc_a.input_ids[shared] == enc_b.input_ids[shared]:
        shared += 1
    tail_a, tail_b = enc_a.input_ids[shared:], enc_b.input_ids[shared:]
    width = shared + len(tail_a) + len(tail_b)
    allowed = torch.zeros(width, width, dtype=torch.bool)
    end_a = shared + len(tail_a)
    allowed[:end_a, :end_a] = torch.tril(torch.ones(end_a, end_a, dtype=torch.bool))
    allowed[end_a:, :shared] = True
    allowed[end_a:, end_a:] = torch.tril(torch.ones(len(tail_b), len(tail_b), dtype=torch.bool))
    positions = list(range(end_a)) + list(range(shared, shared + len(tail_b)))
    with torch.inference_mode():
        packed = prm.token_scores(
            torch.tensor([enc_a.input_ids + tail_b]),
            allowed[None, None],
            torch.tensor([positions]),
        )[0]
    where_b = [p if p < shared else p - shared + end_a for p in enc_b.score_positions]
    (alone_a, alone_b) = prm.score([first, second])
    assert packed[enc_a.score_positions].tolist() == pytest.approx(alone_a, abs=1e-5)
    assert packed[where_b].tolist() == pytest.approx(alone_b, abs=1e-5)
