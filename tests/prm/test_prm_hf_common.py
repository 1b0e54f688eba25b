"""Shared HF adapter machinery: options, batching plan, right padding, restricted logits."""

from __future__ import annotations

import pytest
import torch
from prm_tiny_hf import make_rlhflow_folder

from sppd.prm.hf_common import (
    HFPRMOptions,
    candidate_logits,
    pad_right,
    plan_batches,
    read_prefixed_tensors,
    resolve_folder,
)
from sppd.types import DType


def test_options_reject_unknown_keys_bad_dtype_and_bad_sizes():
    with pytest.raises(TypeError, match="batchsize"):
        HFPRMOptions(path="x", batchsize=3)
    with pytest.raises(ValueError, match="dtype 'fp8' is not one of: auto, fp32, bf16, fp16"):
        HFPRMOptions(path="x", dtype="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        HFPRMOptions(path="x", batch_size=0)
    assert HFPRMOptions(path="x").trust_remote_code is False


def test_options_parse_dtype_spellings_to_the_one_dtype_enum():
    assert HFPRMOptions(path="x").dtype is DType.AUTO
    assert HFPRMOptions(path="x", dtype="bf16").dtype is DType.BF16
    assert HFPRMOptions(path="x", dtype="bfloat16").dtype is DType.BF16  # the old PRM spelling still works


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        resolve_folder(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        resolve_folder("no-such-org/no-such-prm-xyz")
    assert resolve_folder(tmp_path) == tmp_path


def test_plan_batches_groups_by_length_within_both_limits():
    lengths = [5, 50, 7, 48, 6, 100]
    # longest first; rows x longest <= 100 tokens and at most 2 rows per batch
    assert plan_batches(lengths, batch_size=2, max_batch_tokens=100) == [[5], [1, 3], [2, 4], [0]]
    # a roomy budget: only batch_size limits
    assert plan_batches(lengths, batch_size=4, max_batch_tokens=10_000) == [[5, 1, 3, 2], [4, 0]]
    assert sorted(sum(plan_batches(lengths, 3, 120), [])) == list(range(6))


def test_pad_right_keeps_real_tokens_and_their_positions():
    input_ids, attention_mask, position_ids = pad_right([[7, 8, 9], [5]], 0, torch.device("cpu"))
    assert input_ids.tolist() == [[7, 8, 9], [5, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_read_prefixed_tensors_names_a_missing_head(tmp_path):
    tiny = make_rlhflow_folder(tmp_path / "rl")
    with pytest.raises(KeyError, match="no weights named v_head"):
        read_prefixed_tensors(tiny.folder, "v_head.")
    norm = read_prefixed_tensors(tiny.folder, "model.norm.")
    assert torch.equal(norm["weight"], tiny.reference.model.norm.weight)


def test_candidate_logits_equal_the_full_logits_columns(tmp_path):
    tiny = make_rlhflow_folder(tmp_path / "rl")
    input_ids = torch.tensor([[3, 9, 27, 4, 11], [8, 8, 2, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    position_ids = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 0, 0]])
    with torch.no_grad():
        full = tiny.reference(input_ids=input_ids, attention_mask=attention_mask).logits
        picked = candidate_logits(tiny.reference, [11, 12], input_ids, attention_mask, position_ids)
    assert picked.shape == (2, 5, 2)
    torch.testing.assert_close(picked[0], full[0, :, [11, 12]], atol=1e-5, rtol=0)
    torch.testing.assert_close(picked[1, :3], full[1, :3, [11, 12]], atol=1e-5, rtol=0)
