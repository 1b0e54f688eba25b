"""``sppd pipeline`` on real architectures gives the same results in 2 processes as in 1.

The policy is a tiny random ``Qwen2ForCausalLM`` with a byte-level BPE tokenizer and a ChatML
template (``fixtures_qwen2``), the PRM a tiny Skywork-format folder over the same tokenizer, the
problems 16 GSM8K *train* questions, the recipe ``qwen2.5-7b-base`` (chat template, blank-line
steps) at toy budgets. The run in one process and the run under ``accelerate launch`` with two
CPU processes (gloo) must agree on trees, PRM values, training pairs, the trained model and the
eval metrics, and each rank must have evaluated its own half of the eval shards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures_qwen2 import build_qwen2
from prm.prm_tiny_hf import make_skywork_folder
from sppd.cli import main as cli_main

pytestmark = pytest.mark.slow  # two pipeline runs, one of them in two launched processes

# A random model spreads its probability over all 480 tokens, so it almost never ends a step with
# the delimiter and every step is cut by the token budget (cut steps make no pairs). This logit
# gives "\n\n" about a quarter of the probability in any context (see _boost_delimiter).
DELIMITER_LOGIT = 5.0


def _boost_delimiter(model, token_id: int, logit: float) -> None:
    """Give ``token_id`` a context-free logit of about ``logit`` over the others (near 0).

    Qwen2's LM head has no bias, so one is built: hidden unit 0 is a constant 4 in every embedding
    and no layer writes to it, so after the final RMSNorm it is ~sqrt(hidden) everywhere (it
    dominates the norm); the head row of ``token_id`` reads it.
    """
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 4.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[token_id, 0] = logit / model.config.hidden_size**0.5


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """(policy folder, Skywork-format PRM folder), both over the Qwen2 tokenizer."""
    root = tmp_path_factory.mktemp("real_arch")
    model, tokenizer = build_qwen2()
    (delimiter,) = tokenizer.encode("\n\n")
    _boost_delimiter(model, delimiter, DELIMITER_LOGIT)
    model.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    make_skywork_folder(root / "prm", tokenizer=tokenizer)
    return root / "policy", root / "prm"


def _overrides(run_dir: Path, policy: Path, prm: Path, batch_size: int) -> list[str]:
    """``qwen2.5-7b-base`` at toy budgets; ``batch_size`` per process (the global batch is fixed)."""
    train = f"optimizer: sgd, lr: 0.05, batch_size: {batch_size}, grad_accum: 1, max_length: 512, warmup_ratio: 0.0"
    return [
        f"run_dir={run_dir}",
        f"model.path={policy}",
        f"score.prm_path={prm}",
        "model.dtype=fp32",
        "model.device=cpu",
        "threads=1",  # the same float reductions in both runs, and no oversubscribed cores
        "problems.source=gsm8k",
        "problems.split=train",
        "problems.n=16",
        "sample.K=2",
        "sample.max_depth=2",
        "sample.max_step_tokens=8",
        "sample.max_total_tokens=16",
        "sample.engine_batch_size=64",
        "sample.problems_per_shard=4",
        "build.step_gap=0.01",
        "eval.benchmarks=[gsm8k]",
        "eval.n_problems=4",
        "eval.n_samples=2",
        "eval.max_new_tokens=8",
        "eval.batch_size=16",
        "eval.problems_per_shard=1",
        "eval.bootstrap=20",
        "eval.grade_workers=1",
        "pipeline.stages=1",
        "pipeline.launcher=inprocess",  # the whole pipeline in this process (or under one accelerate launch)
        "pipeline.gammas=[]",
        "pipeline.margin_ablation=false",
        "pipeline.control=false",
        f"pipeline.sft={{objective: sft, {train}}}",
        f"pipeline.dpo={{objective: dpo, {train}}}",
        f"pipeline.step_dpo={{objective: step_dpo, {train}}}",
    ]


def _launch_two(overrides: list[str]) -> None:
    accelerate_config = resources.files("sppd") / "configs" / "accelerate" / "cpu2.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU/gloo path even on a machine with GPUs
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    command += ["--num_processes", "2", "-m", "sppd", "pipeline", "-c", "qwen2.5-7b-base", *overrides]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    errors = [line for line in proc.stderr.splitlines() if "Error" in line]  # each rank's, not only the last
    assert proc.returncode == 0, "\n".join(errors[-10:]) + "\n" + proc.stderr[-3000:]


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for shard in sorted(folder.glob("records-*.jsonl")) for line in shard.open()]


def _assert_same(a, b, where: str = "") -> None:
    """Equal JSON values; floats within 1e-5 (texts, token ids and counts exactly)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_two_processes_match_one(tmp_path, folders):
    policy, prm = folders
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli_main(["pipeline", "-c", "qwen2.5-7b-base", *_overrides(one, policy, prm, batch_size=4)]) == 0
    _launch_two(_overrides(two, policy, prm, batch_size=2))  # 2 processes x 2 = the same global batch

    for run in (one, two):
        assert (run / "report.md").exists() and (run / "rows.json").exists() and (run / "timings.json").exists()
    trees = _records(one / "stage1" / "trees")
    assert len(trees) == 16 and trees[0]["prompt_ids"][:1] == [1]  # <|im_start|>: the chat template path
    for folder in ["trees", "scored", "data/sft", "data/dpo", "data/step_pairs"]:
        _assert_same(_records(one / "stage1" / folder), _records(two / "stage1" / folder), folder)
    scored = _records(one / "stage1" / "scored")
    assert all(n["value_source"] == "skywork" and 0 < n["value"] < 1 for t in scored for n in t["nodes"])
    pairs = _records(one / "stage1" / "data" / "step_pairs")
    assert len(pairs) >= 4  # enough to train on: steps end with the delimiter, siblings differ in value

    summaries = [json.loads((r / "stage1" / "sppd" / "train_summary.json").read_text()) for r in (one, two)]
    assert [s["processes"] for s in summaries] == [1, 2] and summaries[0]["steps"] == summaries[1]["steps"]
    w0, w1, w2 = (load_file(str(p / "model.safetensors")) for p in (policy, one / "stage1/sppd", two / "stage1/sppd"))
    assert max(float((w1[k] - w0[k]).abs().max()) for k in w0) > 1e-3  # training moved the weights
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w0) < 1e-5

    for row in ["Base", "+SPPD"]:
        m1, m2 = (json.loads((r / "eval" / row / "metrics.json").read_text()) for r in (one, two))
        m1["_meta"].pop("model"), m2["_meta"].pop("model")  # a folder inside each run
        _assert_same(m1, m2, row)
        texts = [
            [{k: v for k, v in r.items() if k != "rank"} for r in _records(run / "eval" / row)] for run in (one, two)
        ]
        _assert_same(*texts, f"{row} records")  # completions, answers and PRM step scores
        manifests = [json.loads((r / "eval" / row / "manifest.json").read_text()) for r in (one, two)]
        assert [m["processes"] for m in manifests] == [1, 2]
    # shard i of each benchmark was generated by rank i % 2 (each record notes its rank)
    for shard in sorted((two / "eval" / "Base").glob("records-gsm8k-*.jsonl")):
        index = int(shard.stem.rsplit("-", 1)[1])
        assert {json.loads(line)["rank"] for line in shard.open()} == {index % 2}, shard.name
    assert {r["rank"] for r in _records(one / "eval" / "Base")} == {0}
