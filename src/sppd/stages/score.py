"""``sppd score``: attach a value to every node of every tree (paper §4.2: V*(s_t) ~ PRM(s_t)).

Reads the tree shards (``score.trees``, default ``<run_dir>/trees``) and writes one scored shard
per input shard to ``score.out`` (default ``<run_dir>/scored``). ``node.value`` comes from the
scorer named by ``score.scorer`` and ``node.value_source`` records that name; the tree Monte-
Carlo value (``mc_value``, ``mc_count``) is always attached too, since it is free. With
``scorer=mc`` the value *is* the MC value, and nodes with no complete path below stay ``None``
(the manifest counts them).

A shard is the unit of resume: a rerun skips input shards whose scored shard exists. Under
``accelerate launch`` each process takes every WORLD_SIZE-th shard. Scores that are NaN,
outside [0, 1], missing, or whose count does not match the steps stop the stage with an error
naming the problem and node.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sppd import layout, runtime
from sppd.config import ConfigError
from sppd.io import StageDir, iter_trees, read_jsonl
from sppd.prm.mc import MCScorer
from sppd.prm.registry import HF_ADAPTERS, trained_in_run
from sppd.records import Tree
from sppd.settings import RunConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint, policy_id, reuse
from sppd.types import MCJudge

TAG = "scored"


def build_scorer(cfg: RunConfig):
    """The PRM named by ``score.scorer`` with its options (``None`` for ``mc``)."""
    from sppd.prm.base import build_prm

    name, s = cfg.score.scorer, cfg.score
    if name == "mc":
        return None
    if name == "oracle":
        return build_prm("oracle")
    if trained_in_run(name):
        return build_prm(
            name, path=str(layout.prm_path(cfg)), device=cfg.model.device, max_batch_tokens=s.max_batch_tokens
        )
    if name in HF_ADAPTERS:
        if not s.prm_path:
            raise ConfigError(f"config key 'score.prm_path': required for scorer {name!r} (a local PRM folder)")
        return build_prm(
            name,
            path=s.prm_path,
            device=cfg.model.device,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            max_batch_tokens=s.max_batch_tokens,
            **adapter_options(cfg, name),
        )
    return build_prm(name, **({"path": s.prm_path} if s.prm_path else {}))  # a plugin's PRM


def adapter_options(cfg: RunConfig, name: str) -> dict:
    """Options only one HF adapter takes: Skywork's bos prefix (``score.skywork_bos``)."""
    if name == "skywork" and cfg.score.skywork_bos != "auto":
        return {"bos_token": cfg.score.skywork_bos}
    return {}


def rollout_policy(cfg: RunConfig, trees_dir: Path | None = None) -> Path:
    """The policy whose MC values we estimate: ``score.mc_policy``, else the model that sampled the
    trees (their manifest), else the configured policy. Rolling out with another model would mix
    two policies' values in one node."""
    if cfg.score.mc_policy:
        return Path(cfg.score.mc_policy)
    if trees_dir is not None and StageDir(trees_dir).is_complete():
        model = StageDir(trees_dir).read_manifest().get("inputs", {}).get("model")
        if model:
            return Path(model)
    return common.policy_path(cfg)


def build_mc(cfg: RunConfig, trees_dir: Path | None = None) -> MCScorer:
    """The MC scorer; with ``score.mc_min_paths`` or ``score.mc_rollouts`` it rolls out with the policy."""
    from sppd.tasks import resolve

    s = cfg.score
    process = s.mc_judge == MCJudge.PROCESS
    rollouts = s.mc_min_paths > 0 or s.mc_rollouts > 0
    task = resolve(cfg.problems.source, cfg)[0] if process or rollouts else None  # its judges
    if process and task.process_judge is None:
        raise ConfigError(
            "config key 'score.mc_judge': 'process' needs an exact step checker, which task "
            f"{task.name!r} (problems.source) lacks; use 'outcome'"
        )
    leaf_judge = task.process_judge if process else None
    if not rollouts:
        return MCScorer(leaf_judge=leaf_judge, delimiter=cfg.step.delimiter_text())
    from sppd.sampling.engine import GenerationParams
    from sppd.stages.policy_engine import load_engine

    engine, _ = load_engine(cfg, rollout_policy(cfg, trees_dir), cfg.sample.engine_batch_size)
    params = GenerationParams(
        max_new_tokens=cfg.sample.max_total_tokens,
        temperature=cfg.sample.temperature,
        top_p=cfg.sample.top_p,
        stop=None,
    )
    return MCScorer(
        min_paths=s.mc_min_paths,
        per_node=s.mc_rollouts,
        nodes=s.mc_rollout_nodes,
        engine=engine,
        judge=leaf_judge or task.outcome_judge(),
        params=params,
        delimiter=cfg.step.delimiter_text(),
        seed=cfg.seed,
        leaf_judge=leaf_judge,
    )


def score_shard(trees: list[Tree], scorer, mc: MCScorer, cfg: RunConfig, seed: int) -> dict[str, Any]:
    """Attach MC values and scorer values to ``trees`` in place; returns the scoring cost."""
    from sppd.prm.packing import score_trees

    mc.seed = seed
    mc.score_trees(trees)  # one batched set of rollouts for the whole shard
    if scorer is None:
        values = [[n.mc_value for n in t.nodes] for t in trees]
        cost: dict[str, Any] = {}
    else:
        values, stats = score_trees(scorer, trees, cfg.score.packing, cfg.score.max_batch_tokens)
        cost = {
            "forward_tokens": stats.forward_tokens,
            "padded_tokens": stats.padded_tokens,
            "forwards": stats.forwards,
            "fallback_trees": stats.fallback_trees,
            "fallback_reasons": stats.fallback_reasons,
        }
    for tree, tree_values in zip(trees, values):
        for node, value in zip(tree.nodes, tree_values):
            node.value, node.value_source = value, cfg.score.scorer
    return cost


def _check_resumable(out, scorer_name: str) -> None:
    """Refuse to mix shards of two scorers in one folder."""
    for shard in out.shards()[:1]:
        for _, obj in read_jsonl(shard):
            found = next((n.get("value_source") for n in obj.get("nodes", [])), scorer_name)
            if found != scorer_name:
                raise ConfigError(
                    f"config key 'score.scorer': {out.path} holds shards scored by {found!r}, "
                    f"not {scorer_name!r}; remove the folder or set score.out"
                )
            break


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def fingerprint(cfg: RunConfig, trees: StageDir) -> Fingerprint:
    """What scored trees depend on: the trees, the scorer and its PRM folder and, when nodes are
    rolled out, the rollout policy, sampling settings and seed. Token budgets of a forward do not."""
    s = cfg.score
    keys = ["score"]
    exclude = []
    inputs: dict = {"trees": trees.path}
    if s.scorer not in ("mc", "oracle") and (s.prm_path or trained_in_run(s.scorer)):
        inputs["prm"] = layout.prm_path(cfg)
    if s.mc_min_paths > 0 or s.mc_rollouts > 0:
        keys += ["seed", "model.dtype", "step", "problems.source", "sample"]
        exclude.append("sample.problems_per_shard")  # the trees' shard layout: in their fingerprint
        if s.mc_policy or not trees.is_complete():  # else the trees' model, inside their fingerprint
            inputs["rollout_policy"] = Path(s.mc_policy) if s.mc_policy else policy_id(cfg)
    return Fingerprint.of("score", cfg, keys, exclude, inputs)


def main(cfg: RunConfig, out_dir: str = "") -> dict:
    """Score the trees; returns the summary it prints (also the manifest's counts)."""
    from sppd.modeling import set_threads

    set_threads(cfg.threads)
    src = StageDir(layout.score_trees(cfg))
    out = StageDir(layout.pick(out_dir, layout.score_out(cfg)))
    inputs = src.shards()
    if not inputs:
        raise ConfigError(f"config key 'score.trees': no tree shards in {src.path}; run `sppd sample` first")
    fp = fingerprint(cfg, src)
    if reuse(out, fp, out.is_complete() and len(out.shards()) == len(inputs), has_work=bool(out.shards())):
        print(f"score: {out.path} is complete; nothing to do.")
        return out.read_manifest()["counts"]
    rank, world = runtime.rank_and_world()
    _check_resumable(out, cfg.score.scorer)
    out.lock()
    if rank == 0:
        common.save_stage_config(out, cfg)
    cost = _score_todo(cfg, inputs, out, [i for i in range(len(inputs)) if i % world == rank])
    runtime.barrier()
    summary = summarize(out, inputs)
    summary.update(scorer=cfg.score.scorer, packing=str(cfg.score.packing), **cost)
    if rank == 0 and len(out.shards()) == len(inputs):
        out.write_manifest(
            "score",
            counts=summary,
            inputs={
                "trees": str(src.path),
                "shards": [p.name for p in inputs],
                "scorer": cfg.score.scorer,
                "prm_path": cfg.score.prm_path,
                "packing": str(cfg.score.packing),
                "mc_min_paths": cfg.score.mc_min_paths,
                "mc_rollouts": cfg.score.mc_rollouts,
                "mc_rollout_nodes": str(cfg.score.mc_rollout_nodes),
                "mc_judge": str(cfg.score.mc_judge),
            },
            **fp.manifest_fields(),
        )
    runtime.barrier()  # no rank returns before the manifest exists (the next stage checks it)
    print(format_summary(summary, out.path))
    return summary


def _score_todo(cfg: RunConfig, inputs: list[Path], out: StageDir, mine: list[int]) -> dict:
    """Score this process's unfinished shards; returns this run's cost and speed."""
    todo = [i for i in mine if not out.has_shard(TAG, i)]
    scorer, mc = (build_scorer(cfg), build_mc(cfg, inputs[0].parent)) if todo else (None, None)
    bar = runtime.progress(sum(_count_lines(inputs[i]) for i in todo), "score", "tree")
    start, steps = time.perf_counter(), 0
    cost: dict[str, Any] = {"forward_tokens": 0, "fallback_trees": 0, "fallback_reasons": []}
    for i in todo:
        trees = list(iter_trees(inputs[i]))
        shard_cost = score_shard(trees, scorer, mc, cfg, seed=runtime.derive_seed(cfg.seed, "score", i))
        cost["forward_tokens"] += shard_cost.get("forward_tokens", 0)
        cost["fallback_trees"] += shard_cost.get("fallback_trees", 0)
        cost["fallback_reasons"] += [
            r for r in shard_cost.get("fallback_reasons", []) if r not in cost["fallback_reasons"]
        ][:5]
        out.write_shard(TAG, i, (t.to_dict() for t in trees))
        steps += sum(len(t.nodes) for t in trees)
        bar.update(len(trees))
        bar.set_postfix(steps_s=f"{steps / max(time.perf_counter() - start, 1e-9):.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    return {
        **cost,
        "new_shards": len(todo),
        "new_steps": steps,
        "seconds": round(seconds, 2),
        "steps_per_s": round(steps / max(seconds, 1e-9), 1),
    }


def summarize(out: StageDir, inputs: list[Path]) -> dict:
    """Counts over every scored shard written so far."""
    nodes = valued = mc_valued = problems = 0
    value_sum = 0.0
    for tree in iter_trees(out):
        problems += 1
        nodes += len(tree.nodes)
        valued += sum(n.value is not None for n in tree.nodes)
        mc_valued += sum(n.mc_value is not None for n in tree.nodes)
        value_sum += sum(n.value for n in tree.nodes if n.value is not None)
    return {
        "problems": problems,
        "nodes": nodes,
        "valued_nodes": valued,
        "unvalued_nodes": nodes - valued,
        "mc_valued_nodes": mc_valued,
        "mean_value": round(value_sum / max(valued, 1), 4),
        "input_shards": len(inputs),
    }


def format_summary(summary: dict, path) -> str:
    keys = [
        "scorer",
        "packing",
        "problems",
        "nodes",
        "valued_nodes",
        "unvalued_nodes",
        "mc_valued_nodes",
        "mean_value",
        "forward_tokens",
        "fallback_trees",
        "seconds",
        "steps_per_s",
    ]
    lines = [f"score: wrote {path}"] + [f"  {k:18s} {summary[k]}" for k in keys if k in summary]
    lines += [f"  fallback: {r}" for r in summary.get("fallback_reasons", [])]
    return "\n".join(lines)
