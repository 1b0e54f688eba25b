"""Skywork-o1-Open-PRM adapter: token layout of their prepare_input and the value head."""

from __future__ import annotations

import pytest
import torch
from prm_tiny_hf import char_ids, make_rlhflow_folder, make_skywork_folder
from safetensors.torch import load_file, save_file

from fixtures_qwen2 import build_qwen2_tokenizer
from sppd.prm.base import PRMInput
from sppd.prm.skywork import build_skywork_prm

ITEM = PRMInput("1+1?", ["a=2", "so 2\n"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_skywork_folder(tmp_path_factory.mktemp("skywork") / "prm")


@pytest.fixture(scope="module")
def prm(tiny):
    return build_skywork_prm(tiny.folder, device="cpu")


def expected_layout(tiny):
    """bos + "1+1?" + "\\n", then each step's ids followed by the newline id."""
    bos = tiny.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    newline = char_ids(tiny.tokenizer, "\n")[0]
    ids = [bos] + char_ids(tiny.tokenizer, "1+1?") + [newline]
    ids += char_ids(tiny.tokenizer, "a=2") + [newline]  # position 9
    ids += char_ids(tiny.tokenizer, "so 2") + [newline]  # position 14; the step's own "\n" dropped
    return ids, [9, 14]


def test_layout_is_bos_question_newline_then_step_newline(tiny, prm):
    ids, positions = expected_layout(tiny)
    encoded = prm.encode(ITEM)
    assert encoded.input_ids == ids
    assert encoded.score_positions == positions


def test_scores_are_sigmoid_of_the_value_head_at_each_step_newline(tiny, prm):
    ids, positions = expected_layout(tiny)
    with torch.no_grad():
        hidden = tiny.reference.model(torch.tensor([ids])).last_hidden_state[0]
        weight, bias = tiny.head["v_head.summary.weight"], tiny.head["v_head.summary.bias"]
        values = torch.sigmoid(hidden @ weight[0] + bias[0])
    (scores,) = prm.score([ITEM])
    assert scores == pytest.approx(values[positions].tolist(), abs=1e-5)
    # the neighbouring tokens score differently, so a shifted position would be caught
    assert abs(values[8].item() - scores[0]) > 1e-3 and abs(values[13].item() - scores[1]) > 1e-3


def test_bos_override_and_missing_bos(tiny, tmp_path):
    prm = build_skywork_prm(tiny.folder, device="cpu", bos_token="<|im_end|>")
    assert prm.encode(ITEM).input_ids[0] == tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")
    folder = tmp_path / "nobos"
    make_skywork_folder(folder)
    tokenizer_config = folder / "tokenizer_config.json"
    tokenizer_config.write_text(tokenizer_config.read_text().replace('"<|endoftext|>"', "null"))
    with pytest.warns(UserWarning, match="no bos_token"):
        prm = build_skywork_prm(folder, device="cpu")
    assert prm.encode(ITEM).input_ids == expected_layout(tiny)[0][1:]  # the same layout without the bos


def test_a_qwen25_tokenizer_without_bos_scores_from_the_question(tmp_path):
    """Qwen2.5 tokenizers have no bos token: the input starts with the question."""
    tokenizer = build_qwen2_tokenizer()
    assert tokenizer.bos_token is None
    tiny = make_skywork_folder(tmp_path / "prm", tokenizer=tokenizer)
    with pytest.warns(UserWarning, match="no bos_token"):
        prm = build_skywork_prm(tiny.folder, device="cpu")
    item = PRMInput("Natalia sold 48 clips.", ["She sold half.", "The answer is 72"])
    newline = tokenizer("\n")["input_ids"][-1]
    ids = tokenizer("Natalia sold 48 clips.\n")["input_ids"]
    positions = []
    for step in item.steps:
        ids += tokenizer(step)["input_ids"] + [newline]
        positions.append(len(ids) - 1)
    assert prm.encode(item).input_ids == ids
    with torch.no_grad():
        hidden = tiny.reference.model(torch.tensor([ids])).last_hidden_state[0]
    values = torch.sigmoid(hidden @ tiny.head["v_head.summary.weight"][0] + tiny.head["v_head.summary.bias"][0])
    assert prm.score([item])[0] == pytest.approx(values[positions].tolist(), abs=1e-5)


def test_the_bos_prefix_is_a_config_key(tmp_path):
    from sppd.settings import load_run_config
    from sppd.stages.score import build_scorer

    tokenizer = build_qwen2_tokenizer()
    tiny = make_skywork_folder(tmp_path / "prm", tokenizer=tokenizer)
    overrides = [f"run_dir={tmp_path}", "model.device=cpu", "score.scorer=skywork", f"score.prm_path={tiny.folder}"]
    prm = build_scorer(load_run_config("toy-tiny", [*overrides, "score.skywork_bos=<|im_start|>"]))
    assert prm.encode(ITEM).input_ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    with pytest.warns(UserWarning, match="score.skywork_bos"):
        prm = build_scorer(load_run_config("toy-tiny", overrides))
    question_ids = tokenizer("1+1?\n")["input_ids"]
    assert prm.encode(ITEM).input_ids[: len(question_ids)] == question_ids  # no prefix


def test_a_missing_backbone_weight_is_an_error_not_a_random_init(tmp_path):
    tiny = make_skywork_folder(tmp_path / "prm")
    shard = tiny.folder / "model-00001-of-00002.safetensors"
    state = load_file(str(shard))
    del state["model.norm.weight"]
    save_file(state, str(shard))
    with pytest.raises(KeyError, match="model.norm.weight|norm.weight"):
        build_skywork_prm(tiny.folder, device="cpu")


def test_a_non_qwen2_folder_is_rejected(tmp_path):
    tiny = make_rlhflow_folder(tmp_path / "llama")
    with pytest.raises(ValueError, match="expected a qwen2 checkpoint"):
        build_skywork_prm(tiny.folder, device="cpu")
