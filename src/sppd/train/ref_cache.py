"""Reference log-probs, computed once before training and cached on disk.

DPO and step-DPO need log π_ref of every chosen and rejected completion. They never change
during training, so they are computed in one pass with the reference model, which is then
freed: no second model sits in memory while the policy trains. The result is written to the
run's output folder as ``ref_logps-<key>.pt``, where ``key`` hashes the tokenized examples (so
the data and every tokenization setting), the reference model folder, the precision and the
config fields that affect them (a field declared ``runtime`` never counts); a rerun
or a resumed run with the same inputs loads it instead of recomputing.

Under several processes each rank computes every ``world``-th example and writes a part file;
after a barrier every rank assembles the parts and rank 0 writes the merged cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sppd.data.tokenize import PairTokens
from sppd.digest import canonical_json

CACHE_VERSION = 1  # bump when the log-prob computation changes meaning


@dataclass(frozen=True)
class RefLogps:
    """Reference summed log-probs of every example's completions: ``(N,)`` each, fp32, CPU."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor

    def take(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        return self.chosen_logps[index], self.rejected_logps[index]


def model_fingerprint(path: str | os.PathLike) -> dict:
    """Identity of a model folder without reading its weights: the config's digest plus the
    name, size and modification time of every weight file."""
    path = Path(path)
    config = path / "config.json"
    weights = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".pt"}) if path.is_dir() else []
    return {
        "path": str(path.resolve()),
        "config": hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None,
        "weights": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights],
    }


def cache_key(examples: list[PairTokens], ref_path: str | os.PathLike, settings: dict) -> str:
    """24-hex-digit key of (examples' ids, reference model, settings such as precision)."""
    h = hashlib.sha256()
    h.update(canonical_json({"version": CACHE_VERSION, "model": model_fingerprint(ref_path), **settings}).encode())
    for e in examples:
        for ids in (e.prompt_ids, e.chosen_ids, e.rejected_ids):
            h.update(len(ids).to_bytes(4, "little"))
            h.update(array("q", ids).tobytes())
    return h.hexdigest()[:24]


@torch.no_grad()
def compute_ref_logps(
    model,
    examples: list[PairTokens],
    indices: list[int],
    collate: Callable,
    logps_fn: Callable,
    batch_size: int,
    device,
    autocast=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``examples[indices]`` with ``model``, in the order of ``indices``.

    ``collate(examples) -> batch`` and ``logps_fn(model, batch) -> ((B,), (B,))`` are the same
    functions training uses, so the reference and the initial policy agree exactly. Examples are
    batched longest first to keep padding small.
    """
    order = sorted(range(len(indices)), key=lambda k: -examples[indices[k]].n_tokens)
    chosen = torch.zeros(len(indices), dtype=torch.float32)
    rejected = torch.zeros(len(indices), dtype=torch.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([examples[indices[k]] for k in chunk]).to(device)
        with (autocast or contextlib.nullcontext)():
            chosen_logps, rejected_logps = logps_fn(model, batch)
        chosen[chunk] = chosen_logps.float().cpu()
        rejected[chunk] = rejected_logps.float().cpu()
    return chosen, rejected


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cached_ref_logps(
    accelerator,
    examples: list[PairTokens],
    key: str,
    out_dir: Path,
    load_ref_model: Callable,
    collate: Callable,
    logps_fn: Callable,
    batch_size: int,
) -> RefLogps:
    """Load ``<out_dir>/ref_logps-<key>.pt`` or compute it (split across processes) and save it.

    ``load_ref_model()`` is called only when computing; the model is dropped before returning.
    """
    path = out_dir / f"ref_logps-{key}.pt"
    if not path.exists():
        rank, world = accelerator.process_index, accelerator.num_processes
        mine = list(range(rank, len(examples), world))
        model = load_ref_model().to(accelerator.device).eval()
        chosen, rejected = compute_ref_logps(
            model, examples, mine, collate, logps_fn, batch_size, accelerator.device, accelerator.autocast
        )
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        part = out_dir / f"ref_logps-{key}.rank{rank}.pt"
        _atomic_torch_save({"indices": mine, "chosen": chosen, "rejected": rejected}, part)
        accelerator.wait_for_everyone()
        merged = _merge_parts(out_dir, key, world, len(examples))
        accelerator.wait_for_everyone()  # every rank has read the parts
        if accelerator.is_main_process:
            _atomic_torch_save({"key": key, "n": len(examples), **merged}, path)
            for r in range(world):
                (out_dir / f"ref_logps-{key}.rank{r}.pt").unlink(missing_ok=True)
        accelerator.wait_for_everyone()
    data = torch.load(path, weights_only=True)
    if data["key"] != key or data["n"] != len(examples):
        raise ValueError(f"{path}: reference cache does not match the data (delete it to recompute)")
    return RefLogps(chosen_logps=data["chosen"], rejected_logps=data["rejected"])


def _merge_parts(out_dir: Path, key: str, world: int, n: int) -> dict[str, torch.Tensor]:
    chosen = torch.full((n,), float("nan"))
    rejected = torch.full((n,), float("nan"))
    for r in range(world):
        part = torch.load(out_dir / f"ref_logps-{key}.rank{r}.pt", weights_only=True)
        index = torch.tensor(part["indices"], dtype=torch.long)
        chosen[index], rejected[index] = part["chosen"], part["rejected"]
    if torch.isnan(chosen).any() or torch.isnan(rejected).any():
        raise RuntimeError("reference log-probs are missing for some examples")
    return {"chosen": chosen, "rejected": rejected}
