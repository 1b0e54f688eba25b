"""``sppd build``: turn scored trees into the three training sets (paper §4.1, §4.3, §5).

Reads the scored trees folder (``build.trees``, default ``<run_dir>/scored``) and writes, under
``build.out`` (default ``<run_dir>/data``), one artifact folder per training set, so a trainer
points at exactly one of them:

* ``sft/``         ``SFTExample`` records (tau_+ per problem)
* ``dpo/``         ``PreferencePair`` records (tau_+ vs tau_-)
* ``step_pairs/``  ``StepPair`` records (sibling steps with their values)

Each folder's manifest holds the builder's counts (what was kept, why the rest was dropped), the
inputs (trees folder, the build settings, the delimiter), dataset statistics and the stage
fingerprint. Building is fast, so resume is all or nothing: when all three folders are complete
with this config's fingerprint the stage does nothing, otherwise it clears them and rebuilds. Shards are
written whole (temp file + rename) and stale ones removed first, so no record is ever duplicated.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sppd import config as _config
from sppd import layout, runtime
from sppd.data.builders import build_dpo, build_sft, build_step_pairs
from sppd.io import MANIFEST, StageDir, file_digest, iter_trees
from sppd.records import RECORD_KINDS, PreferencePair, SFTExample, StepPair
from sppd.settings import RunConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint

OUTPUTS = tuple(layout.DATA_SETS.values())  # ("sft", "dpo", "step_pairs")
TREES_PER_SHARD = 256  # input trees per output shard: bounds memory, independent of input layout


def main(cfg: RunConfig, trees_dir: str = "", out_dir: str = "") -> dict:
    """Build the SFT, DPO and step-pair sets; returns ``{set name: {counts, stats, shards}}``.

    ``trees_dir``/``out_dir`` override ``build.trees``/``build.out``. Under ``accelerate launch``
    only rank 0 builds (it is fast); the other ranks wait for it and return ``{}``.
    """
    trees = StageDir(layout.pick(trees_dir, layout.build_trees(cfg)))
    if not trees.is_complete():  # on every rank: none is left waiting at the barrier for a failed rank 0
        raise _config.ConfigError(
            f"config key 'build.trees': {trees.path} is not a complete scored-trees folder (no manifest); "
            "score the trees first"
        )
    rank, _ = runtime.rank_and_world()
    summary = _build(cfg, trees, out_dir) if rank == 0 else {}
    runtime.barrier()
    return summary


def _build(cfg: RunConfig, trees: StageDir, out_dir: str) -> dict:
    root = layout.pick(out_dir, layout.build_out(cfg))
    outs = {name: StageDir(root / name) for name in OUTPUTS}
    fps = {name: fingerprint(cfg, trees, name) for name in OUTPUTS}
    if all(o.is_complete() and o.read_manifest().get("fingerprint") == fps[name].digest for name, o in outs.items()):
        summary = {name: _summary_of(o.read_manifest()) for name, o in outs.items()}
        print(f"build: {root} is complete for these inputs; nothing to do.")
        print(format_summary(summary, root))
        return summary
    for out in outs.values():
        out.lock()
        _clear(out)
        common.save_stage_config(out, cfg)
    counters = _write_sets(cfg, trees, outs)
    inputs = {  # for readers; the fingerprint decides reuse
        "trees": str(trees.path),
        "trees_stage": (trees.read_manifest() or {}).get("stage"),
        "build": _config.to_dict(cfg.build),
        "delimiter": cfg.step.delimiter_text(),
    }
    summary = {}
    for name, out in outs.items():
        stats = STATS[name](_load(out, name))
        out.write_manifest(
            f"build/{name}",
            counts=dict(sorted(counters[name].items())),
            inputs=inputs,
            stats=stats,
            **fps[name].manifest_fields(),
        )
        summary[name] = _summary_of(out.read_manifest())
    print(format_summary(summary, root))
    return summary


def fingerprint(cfg: RunConfig, trees: StageDir, name: str) -> Fingerprint:
    """What one training set depends on: the build settings, the delimiter and the scored trees.

    A complete build whose fingerprint differs is redone without asking (it is cheap and all or
    nothing). Trees without a recorded fingerprint (hand-made, or an older sppd's) count by their
    manifest's digest rather than their path, so rescoring them in place rebuilds too.
    """
    manifest = trees.read_manifest()
    tree_id: str | Path = trees.path
    if manifest and not manifest.get("fingerprint"):
        tree_id = f"manifest-{file_digest(trees.path / MANIFEST)}"
    return Fingerprint.of(f"build/{name}", cfg, ["build", "step.delimiter", "step.custom"], inputs={"trees": tree_id})


def _clear(out: StageDir) -> None:
    """Forget a previous (partial or outdated) build: manifest first, so a kill leaves it incomplete."""
    out.invalidate()
    for shard in out.shards():
        shard.unlink()


def _write_sets(cfg: RunConfig, trees: StageDir, outs: dict[str, StageDir]) -> dict[str, Counter]:
    """Run the three builders over all trees, one output shard per ``TREES_PER_SHARD`` trees."""
    delim = cfg.step.delimiter_text()
    counters = {name: Counter() for name in OUTPUTS}
    n_trees = (trees.read_manifest() or {}).get("counts", {}).get("problems")
    bar = runtime.progress(n_trees if isinstance(n_trees, int) else None, "build", "tree")
    floor = cfg.build.chosen_min_value
    for index, chunk in enumerate(_chunks(iter_trees(trees), TREES_PER_SHARD)):
        sft = [build_sft(t, counters["sft"], delim, floor) for t in chunk]
        dpo = [build_dpo(t, counters["dpo"], delim, floor) for t in chunk]
        steps = [p for t in chunk for p in build_step_pairs(t, cfg.build, counters["step_pairs"], delim)]
        outs["sft"].write_shard("sft", index, (r.to_dict() for r in sft if r is not None))
        outs["dpo"].write_shard("dpo", index, (r.to_dict() for r in dpo if r is not None))
        outs["step_pairs"].write_shard("step_pairs", index, (r.to_dict() for r in steps))
        bar.update(len(chunk))
    bar.close()
    return counters


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


_KIND = {"sft": "sft", "dpo": "pair", "step_pairs": "step_pair"}


def _load(out: StageDir, name: str) -> Iterator:
    """Read a set back (checks what was written and feeds the statistics)."""
    cls = RECORD_KINDS[_KIND[name]]
    for where, obj in out.iter_records():
        yield cls.from_dict(obj, where)


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None


def sft_stats(records: Iterable[SFTExample]) -> dict:
    recs = list(records)
    return {
        "examples": len(recs),
        "mean_min_value": _mean([r.min_value for r in recs if r.min_value is not None]),
        "mean_steps": _mean([len(r.steps) for r in recs]),
        "mean_completion_chars": _mean([len(r.completion) for r in recs]),
    }


def dpo_stats(records: Iterable[PreferencePair]) -> dict:
    recs = list(records)
    valued = [r for r in recs if r.chosen_value is not None and r.rejected_value is not None]
    return {
        "pairs": len(recs),
        "mean_chosen_value": _mean([r.chosen_value for r in valued]),
        "mean_rejected_value": _mean([r.rejected_value for r in valued]),
        "mean_value_gap": _mean([r.chosen_value - r.rejected_value for r in valued]),
        "mean_chosen_steps": _mean([len(r.chosen_steps) for r in recs]),
        "mean_rejected_steps": _mean([len(r.rejected_steps) for r in recs]),
    }


def step_pair_stats(records: Iterable[StepPair]) -> dict:
    """Gap and depth distributions; the histogram bins gaps by 0.1 (key = bin's lower edge)."""
    gaps, depths, chosen_term, rejected_term, chosen_v, rejected_v = [], Counter(), 0, 0, [], []
    problems = set()
    for r in records:
        gaps.append(r.chosen_value - r.rejected_value)
        chosen_v.append(r.chosen_value)
        rejected_v.append(r.rejected_value)
        depths[r.depth] += 1
        chosen_term += r.chosen_terminal
        rejected_term += r.rejected_terminal
        problems.add(r.problem_id)
    n = len(gaps)
    gap_bins = Counter(f"{min(int(g * 10 + 1e-9), 9) / 10:.1f}" for g in gaps)
    return {
        "pairs": n,
        "problems": len(problems),
        "mean_value_gap": _mean(gaps),
        "min_value_gap": round(min(gaps), 6) if gaps else None,
        "max_value_gap": round(max(gaps), 6) if gaps else None,
        "mean_chosen_value": _mean(chosen_v),
        "mean_rejected_value": _mean(rejected_v),
        "gap_histogram": dict(sorted(gap_bins.items())),
        "depth_histogram": {str(d): depths[d] for d in sorted(depths)},
        "mean_depth": round(sum(d * c for d, c in depths.items()) / n, 6) if n else None,
        "chosen_terminal_fraction": round(chosen_term / n, 6) if n else None,
        "rejected_terminal_fraction": round(rejected_term / n, 6) if n else None,
    }


STATS: dict[str, Callable[[Iterable], dict]] = {"sft": sft_stats, "dpo": dpo_stats, "step_pairs": step_pair_stats}


def _summary_of(manifest: dict) -> dict:
    return {"counts": manifest["counts"], "stats": manifest.get("stats", {}), "shards": len(manifest["shards"])}


# per set: what one kept record stands for, and the counter keys that are reasons for dropping
_LAYOUT = {
    "sft": ("problems", ["no_correct_path"]),
    "dpo": ("problems", ["no_correct_path", "no_wrong_path"]),
    "step_pairs": ("candidate pairs", ["tie", "gap_too_small", "same_text", "over_cap"]),
}


def format_summary(summary: dict, root) -> str:
    """Kept and dropped per set, then the remaining counters (paths, skipped steps, ...)."""
    lines = [f"build: {root}"]
    pad = " " * 14
    for name in OUTPUTS:
        counts = summary[name]["counts"]
        unit, reasons = _LAYOUT[name]
        kept = counts.get("kept", 0)
        total = counts.get("problems", 0) if unit == "problems" else kept + sum(counts.get(k, 0) for k in reasons)
        dropped = ", ".join(f"{k} {counts[k]}" for k in reasons if counts.get(k)) or "none"
        lines.append(f"  {name:11s} kept {kept} of {total} {unit}; dropped: {dropped}")
        other = {k: v for k, v in counts.items() if k not in reasons and k != "kept"}
        lines.append(pad + ", ".join(f"{k} {v}" for k, v in other.items()))
        stats = summary[name]["stats"]
        if name == "step_pairs" and stats.get("pairs"):
            lines.append(
                pad + f"mean gap {stats['mean_value_gap']}, depths {stats['depth_histogram']}, "
                f"chosen terminal {stats['chosen_terminal_fraction']}"
            )
    return "\n".join(lines)
