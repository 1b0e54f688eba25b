"""``sppd train``: train the policy with ``train.objective`` = sft | dpo | step_dpo.

Reads a records folder (``train.data``, default ``<run_dir>/data/<sft|dpo|step_pairs>``), starts
from ``train.init`` (default: the policy) and writes ``train.out`` (default
``<run_dir>/train-<objective>``): an HF model folder (``save_pretrained`` + tokenizer) that
``AutoModelForCausalLM.from_pretrained`` loads, ``metrics.jsonl``, ``train_summary.json``, the
reference log-prob cache and ``manifest.json``. A complete folder is skipped; an incomplete one
resumes from its latest checkpoint. Runs unchanged under ``accelerate launch``: DDP is tested
with 2 CPU processes (gloo); the DeepSpeed ZeRO-2/3 path (configs/accelerate/zero*.yaml) is
written against accelerate's API but not exercised by the test suite (no deepspeed, no GPU).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sppd import config as _config
from sppd import layout
from sppd.data.tokenize import TokenizeSettings
from sppd.io import DataFileError, StageDir, atomic_write_json
from sppd.modeling import load_tokenizer, set_threads
from sppd.records import RECORD_KINDS
from sppd.report_diagnostics import preference_drift
from sppd.runtime import resolve_device, resolve_dtype
from sppd.settings import RunConfig, TrainConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint, reuse, select
from sppd.train.drift import saved_l2_distance
from sppd.train.loop import (
    CHECKPOINTS,
    METRICS,
    LoopInputs,
    build_optimizer,
    deepspeed_settings,
    latest_checkpoint,
    prepare_for_training,
    train_loop,
)
from sppd.train.objectives import ObjectiveSpec, get_objective, pair_logps
from sppd.train.ref_cache import RefLogps, cache_key, cached_ref_logps
from sppd.types import DType, MixedPrecision


@dataclass(frozen=True)
class TrainPaths:
    """Resolved input and output folders of one training run."""

    data: Path
    init: Path
    ref: Path
    out: StageDir


def resolve_paths(cfg: RunConfig, spec: ObjectiveSpec) -> TrainPaths:
    """Data, init, reference and output folders, with the documented defaults."""
    t = cfg.train
    init = Path(t.init) if t.init else Path(common.policy_path(cfg))
    ref = Path(t.ref) if t.ref else init
    for key, given in (("train.init", t.init), ("train.ref", t.ref)):
        if given and not Path(given).is_dir():  # else transformers reads it as a hub repo id
            raise _config.ConfigError(f"config key '{key}': model folder not found: {given}")
    return TrainPaths(layout.train_data(cfg), init, ref, StageDir(layout.train_out(cfg)))


def fingerprint(cfg: RunConfig, spec: ObjectiveSpec, paths: TrainPaths) -> Fingerprint:
    """What the trained model depends on: the train settings (those declared ``runtime``, such as
    logging and checkpointing, change no weight), tokenization (prompt, delimiter), and the data,
    init and reference folders by their own fingerprints."""
    inputs = {"data": paths.data, "init": paths.init, **({"ref": paths.ref} if spec.needs_ref else {})}
    return Fingerprint.of("train", cfg, ["train", "prompt", "step.delimiter", "step.custom"], inputs=inputs)


def resolve_mixed_precision(value: MixedPrecision | str, device: torch.device) -> str:
    """Accelerate's ``mixed_precision`` string; ``auto`` -> bf16 on CUDA, no (fp32) on CPU."""
    value = MixedPrecision(value)
    if value is MixedPrecision.AUTO:
        value = MixedPrecision.BF16 if device.type == "cuda" else MixedPrecision.NO
    return value.value


def make_accelerator(cfg: RunConfig, out: Path):
    from accelerate import Accelerator

    device = resolve_device(cfg.model.device)
    trackers = list(cfg.train.trackers) or None
    # cpu=True is what makes `accelerate launch` on a CPU-only machine start gloo DDP.
    acc = Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision, device),
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with=trackers,
        project_dir=str(out),
    )
    if acc.gradient_accumulation_steps != cfg.train.grad_accum:  # an accelerate config/env overrode it
        raise _config.ConfigError(
            f"config key 'train.grad_accum' is {cfg.train.grad_accum} but accelerate uses "
            f"{acc.gradient_accumulation_steps}; remove gradient_accumulation_steps from the accelerate config"
        )
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is not None:
        plugin.deepspeed_config.update(deepspeed_settings(cfg.train))
    return acc


def read_records(data: Path, spec: ObjectiveSpec) -> list:
    """All records of a build folder, checked to be of the objective's kind."""
    folder = StageDir(data)
    if not folder.shards():
        raise FileNotFoundError(f"no records-*.jsonl in {data} (config key 'train.data'; run `sppd build` first)")
    kind = next(k for k, cls in RECORD_KINDS.items() if cls is spec.record_cls)
    records = []
    for where, obj in folder.iter_records():
        if obj.get("kind") != kind:
            raise DataFileError(
                f"{where}: field 'kind': objective {spec.name} reads '{kind}' records, found {obj.get('kind')!r} "
                "(config keys 'train.objective' / 'train.data')"
            )
        records.append(spec.record_cls.from_dict(obj, where))
    return records


def load_model(path: Path, cfg: RunConfig) -> torch.nn.Module:
    """fp32 weights (master copy; bf16 comes from accelerate's autocast on GPU)."""
    from transformers import AutoModelForCausalLM

    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path} (config keys 'train.init' / 'train.ref')")
    return AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, local_files_only=True, trust_remote_code=cfg.model.trust_remote_code
    )


def _declared_dtype(path: Path) -> torch.dtype:
    """The dtype the init folder's config declares (the final model is saved in it), else fp32."""
    try:
        config = json.loads((path / "config.json").read_text())
        declared = DType(str(config.get("dtype") or config.get("torch_dtype")))  # HF writes "bfloat16" etc.
    except (OSError, ValueError):  # no readable config, or a dtype sppd does not train in (float64, ...)
        return torch.float32
    return torch.float32 if declared is DType.AUTO else resolve_dtype(declared, torch.device("cpu"))


def save_final_model(acc, model, tokenizer, out: Path, dtype: torch.dtype) -> None:
    """HF folder that ``from_pretrained`` loads, weights cast to the init model's dtype."""
    acc.wait_for_everyone()
    state_dict = acc.get_state_dict(model)  # gathers ZeRO-3 shards; every rank must call it
    if acc.is_main_process:
        unwrapped = acc.unwrap_model(model)
        unwrapped.config.use_cache = True  # training turned it off; generation wants it
        unwrapped.config.dtype = dtype
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        unwrapped.save_pretrained(str(out), state_dict=state_dict)
        write_config_dtype(out, dtype)
        tokenizer.save_pretrained(str(out))
    acc.wait_for_everyone()


def write_config_dtype(folder: Path, dtype: torch.dtype) -> None:
    """Make ``config.json`` declare ``dtype``, the dtype of the saved weights.

    ``save_pretrained`` writes the dtype of the model's parameters: the fp32 master copy, not the
    bf16 weights it was handed. The next stage takes its save dtype from this declaration
    (``_declared_dtype``), so a wrong one doubles every later model's size on disk.
    """
    path = folder / "config.json"
    config = json.loads(path.read_text())
    name = str(dtype).removeprefix("torch.")
    keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]
    config.update({k: name for k in keys})
    atomic_write_json(path, config)


def _set_cpu_threads(cfg: RunConfig, device: torch.device) -> None:
    # Several CPU processes on one machine must share its cores, not each take all of them.
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if cfg.threads == 0 and device.type == "cpu" and local > 1:
        set_threads(max(1, (os.cpu_count() or 1) // local))
    else:
        set_threads(cfg.threads)


def _tracker_config(t: TrainConfig) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in _config.to_dict(t).items()}


# What reference log-probs depend on besides the token ids and the reference model: the fields
# declared not to affect output (sppd.digest) drop out, and so do the defaults.
REF_KEYS = (
    "train.objective",
    "train.prefix_sharing",
    "train.max_length",
    "train.overlong",
    "prompt",
    "step.delimiter",
    "step.custom",
)


def ref_cache_settings(cfg: RunConfig, mixed_precision: str) -> dict:
    """The settings part of the reference-cache key: ``REF_KEYS``' values and the resolved precision."""
    return {"config": select(_config.to_dict(cfg), REF_KEYS), "mixed_precision": mixed_precision}


def reference_logps(
    acc,
    cfg: RunConfig,
    spec: ObjectiveSpec,
    paths: TrainPaths,
    examples: list,
    pad_id: int,
) -> RefLogps:
    """Cached reference log-probs of ``examples`` (computed with ``train.ref`` on first use)."""
    t = cfg.train
    key = cache_key(examples, paths.ref, ref_cache_settings(cfg, acc.mixed_precision))
    return cached_ref_logps(
        acc,
        examples,
        key,
        paths.out.path,
        load_ref_model=lambda: prepare_for_training(load_model(paths.ref, cfg), t).eval(),
        collate=lambda batch: spec.collate(batch, pad_id, t.prefix_sharing),
        logps_fn=pair_logps,
        batch_size=t.batch_size,
    )


def _finish(acc, model, tokenizer, paths: TrainPaths, summary: dict, fp: Fingerprint) -> None:
    """Final model, summary, manifest; then drop the checkpoints the final model supersedes
    (with Adam states they are ~3x the model's size)."""
    save_final_model(acc, model, tokenizer, paths.out.path, _declared_dtype(paths.init))
    if acc.is_main_process:
        if summary.get("l2_from_start") is None:  # ZeRO-3 shards: measure the saved (gathered) model
            summary["l2_from_start"] = saved_l2_distance(paths.out.path, paths.init)
        # the report's "did training move the model" columns, over the whole metrics log (resumes included)
        summary.update(preference_drift(paths.out.path / METRICS))
        atomic_write_json(paths.out.path / "train_summary.json", summary)
        paths.out.write_manifest(
            "train",
            counts=summary,
            inputs={
                "objective": summary["objective"],
                "data": summary["data"],
                "init": summary["init"],
                "ref": summary["ref"],
            },
            **fp.manifest_fields(),
        )
        shutil.rmtree(paths.out.path / CHECKPOINTS, ignore_errors=True)
        print(format_summary(summary))
    acc.wait_for_everyone()


def main(cfg: RunConfig, stop_after: int | None = None) -> dict:
    """Train; returns the summary (also written to ``train_summary.json``).

    ``stop_after``: stop once that many optimizer steps are done, leaving only checkpoints, as a
    kill would (for resume tests); a later call resumes.
    """
    t = cfg.train
    spec = get_objective(t.objective)
    paths = resolve_paths(cfg, spec)
    fp = fingerprint(cfg, spec, paths)
    # only checkpoints are resumed from: a folder without them is trained afresh, mixing nothing
    if reuse(paths.out, fp, paths.out.is_complete(), has_work=latest_checkpoint(paths.out.path) is not None):
        print(f"train: {paths.out.path} is complete; nothing to do.")
        return paths.out.read_manifest()["counts"]
    paths.out.lock()
    _set_cpu_threads(cfg, resolve_device(cfg.model.device))
    acc = make_accelerator(cfg, paths.out.path)
    from accelerate.utils import set_seed

    set_seed(t.seed)
    if acc.is_main_process:
        common.save_stage_config(paths.out, cfg)
    tokenizer = load_tokenizer(paths.init, cfg.model.trust_remote_code)
    settings = TokenizeSettings(t.max_length, t.overlong, cfg.step.delimiter_text(), cfg.prompt)
    examples, report = spec.tokenize(read_records(paths.data, spec), tokenizer, settings)
    if acc.is_main_process:
        print(report.describe(t.overlong, t.max_length))
    if not examples:
        raise common.EmptyStageError(f"{paths.data}: nothing to train on; {report.describe(t.overlong, t.max_length)}")
    pad_id = int(tokenizer.pad_token_id)
    start = time.perf_counter()
    ref = reference_logps(acc, cfg, spec, paths, examples, pad_id) if spec.needs_ref else None
    ref_seconds = time.perf_counter() - start

    model = prepare_for_training(load_model(paths.init, cfg), t)
    model, optimizer = acc.prepare(model, build_optimizer(model, t))
    if t.trackers:
        acc.init_trackers("sppd-train", config=_tracker_config(t))
    summary = train_loop(
        LoopInputs(acc, model, optimizer, spec, examples, ref, t, paths.out.path, pad_id, paths.init),
        stop_after=stop_after,
    )
    summary.update(
        tokenize=report.summary(),
        ref_seconds=round(ref_seconds, 3),
        processes=acc.num_processes,
        mixed_precision=acc.mixed_precision,
        data=str(paths.data),
        init=str(paths.init),
        ref=str(paths.ref) if spec.needs_ref else None,
        out=str(paths.out.path),
    )
    if t.trackers:
        acc.end_training()
    if summary["complete"]:
        _finish(acc, model, tokenizer, paths, summary, fp)
    return summary


def format_summary(summary: dict) -> str:
    keys = [
        "objective",
        "steps",
        "examples",
        "global_batch",
        "final_loss",
        "final_grad_norm",
        "l2_from_start",
        "tokens",
        "tokens_per_s",
        "train_seconds",
        "ref_seconds",
        "processes",
        "mixed_precision",
    ]
    return "\n".join([f"train: wrote {summary['out']}"] + [f"  {k:16s} {summary.get(k)}" for k in keys])
