"""``sppd prm train``: train a PRM on the trees' Monte-Carlo labels (the toy PRM, or an HF one).

With ``prm.label: process`` the labels come from the step judge of the trees' task
(``problems.source``) instead: a step is 1 while it and every earlier step are right; with
``prm.label: local`` (toy PRM only) a step is 1 when it is right itself, and the PRM scores a
prefix as the min over its steps.

Reads the tree folders of ``prm.trees`` (default ``<run_dir>/trees``), attaches MC values where
the trees have none yet (scored trees keep theirs, rollouts included), trains the toy PRM
(``sppd.prm.toy.train_toy_prm``) and writes it to ``prm.out`` (default ``<run_dir>/prm``) as an
HF-style folder with ``manifest.json``. A complete folder trained from the same inputs is not
retrained. The toy PRM reads the toy world's text format. With ``prm.backbone=hf`` the stage
instead trains a Skywork-format PRM from the HF folder ``prm.init`` (a causal LM, or a
Skywork-format PRM to update; ``sppd.prm.value_head``), which ``score.scorer=skywork
score.prm_path=<prm.out>`` scores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sppd import layout, runtime
from sppd.config import ConfigError
from sppd.io import StageDir, iter_trees
from sppd.prm.mc import attach_mc_values
from sppd.settings import RunConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint, reuse
from sppd.types import PRMBackbone, PRMLabel


def load_labelled_trees(folders: list[Path]):
    """All trees of ``folders`` with MC values (attached from the tree when missing)."""
    trees = []
    for folder in folders:
        if not StageDir(folder).shards():
            raise ConfigError(f"config key 'prm.trees': no tree shards in {folder}; run `sppd sample` first")
        trees.extend(iter_trees(StageDir(folder)))
    for tree in trees:
        if all(n.mc_value is None for n in tree.nodes):
            attach_mc_values(tree)
    return trees


def fingerprint(cfg: RunConfig, folders: list[Path], policy: Path | None) -> Fingerprint:
    """What the PRM depends on: its settings, the seed, the toy model shape and world, the tree
    folders and the policy it starts from."""
    inputs: dict = {f"trees[{i}]": folder for i, folder in enumerate(folders)}
    if policy is not None:
        inputs["policy"] = Path(policy)
    if cfg.prm.backbone is PRMBackbone.HF:  # the toy model and world play no part then
        inputs["init"] = Path(cfg.prm.init)
        return Fingerprint.of("prm_train", cfg, ["seed", "prm"], inputs=inputs)
    return Fingerprint.of("prm_train", cfg, ["seed", "prm", "toy.model", "toy.world"], inputs=inputs)


def hf_init(cfg: RunConfig) -> Path:
    """The folder an hf PRM starts from (``prm.init``), checked before any work."""
    if not cfg.prm.init:
        raise ConfigError("config key 'prm.init': prm.backbone=hf needs the HF model folder to start from")
    init = Path(cfg.prm.init).expanduser()
    if not (init / "config.json").is_file():
        raise ConfigError(f"config key 'prm.init': {init} is not an HF model folder (no config.json)")
    return init


def step_judge(cfg: RunConfig):
    """The step checker of the trees' task (``problems.source``) when ``prm.label`` is process or
    local, else None; checked before any work."""
    label = PRMLabel(cfg.prm.label)
    if not label.needs_step_checker:
        return None
    if label is PRMLabel.LOCAL and cfg.prm.backbone is PRMBackbone.HF:
        raise ConfigError(
            "config key 'prm.label': 'local' scores a prefix by the min over its steps, which only the toy "
            "PRM does (prm.backbone=toy); use 'process' for an hf PRM"
        )
    from sppd.tasks import resolve

    task = resolve(cfg.problems.source, cfg)[0]
    if task.step_checker is None:
        raise ConfigError(
            f"config key 'prm.label': {label.value!r} needs a step checker, which task "
            f"{task.name!r} (problems.source) lacks; use 'soft' or 'hard'"
        )
    return task.step_checker


def main(cfg: RunConfig, out_dir: str = "") -> dict:
    """Train (or reuse) the toy PRM, or the hf one (``prm.backbone``); returns its metrics."""
    from sppd.modeling import set_threads
    from sppd.prm.toy import train_toy_prm

    set_threads(cfg.threads)
    out = StageDir(layout.pick(out_dir, layout.prm_out(cfg)))
    folders = layout.prm_trees(cfg)
    hf = cfg.prm.backbone is PRMBackbone.HF
    init = hf_init(cfg) if hf else None
    judge = step_judge(cfg)
    policy = common.policy_path(cfg) if cfg.prm.init_from_policy and not hf else None
    inputs = {
        "trees": [str(f) for f in folders],
        "policy": str(policy) if policy else None,
        "seed": cfg.seed,
        "prm": {
            k: getattr(cfg.prm, k)
            for k in ("epochs", "lr", "batch_size", "label", "synthetic_solutions", "min_mc_paths", "val_fraction")
        },
    }
    if hf:
        inputs |= {"backbone": PRMBackbone.HF.value, "init": str(init)}
    fp = fingerprint(cfg, folders, policy)
    # a folder from an sppd without fingerprints is retrained when its inputs differ, as it was then
    manifest = out.read_manifest() if out.is_complete() else None
    current = bool(manifest) and (manifest.get("fingerprint") is not None or manifest.get("inputs") == inputs)
    if reuse(out, fp, current, has_work=False):  # never resumed: training restarts from scratch
        print(f"prm train: {out.path} is complete for these inputs; nothing to do.")
        return out.read_manifest()["counts"]
    rank, _ = runtime.rank_and_world()
    metrics: dict = {}
    if rank == 0:  # a tiny model: one process trains it, the others wait
        out.lock()
        out.invalidate()
        trees = load_labelled_trees(folders)
        show = sys.stderr.isatty() or os.environ.get("SPPD_PROGRESS") == "1"
        if hf:
            from sppd.prm.value_head import save_skywork_folder, train_value_head_prm

            prm, metrics = train_value_head_prm(trees, cfg.prm, init, seed=cfg.seed, progress=show, step_judge=judge)
            save_skywork_folder(prm, out.path, metrics)
        else:
            prm, metrics = train_toy_prm(
                trees,
                cfg.prm,
                policy,
                seed=cfg.seed,
                model_cfg=cfg.toy.model,
                progress=show,
                world=cfg.toy.world,
                step_judge=judge,
            )
            prm.save(out.path, metrics)
        common.save_stage_config(out, cfg)
        out.write_manifest("prm_train", counts=metrics, inputs=inputs, **fp.manifest_fields())
        print(format_summary(metrics, out.path))
    runtime.barrier()
    return metrics


def format_summary(metrics: dict, path) -> str:
    lines = [f"prm train: wrote {path}"]
    for key in ("train_problems", "val_problems", "train_paths", "train_labels", "train_loss", "seconds"):
        lines.append(f"  {key:28s} {metrics.get(key)}")
    val = metrics.get("val") or {}
    agree = val.get("checker_agreement") or {}
    mc_agree = val.get("mc_checker_agreement") or {}
    for key, value in (
        ("val mc_mae", val.get("mc_mae")),
        ("val step acc vs checker", agree.get("accuracy")),
        ("val wrong-step precision", agree.get("wrong_precision")),
        ("val wrong-step recall", agree.get("wrong_recall")),
        ("val MC-label acc vs checker", mc_agree.get("accuracy")),
        ("val trajectory accuracy", val.get("trajectory_accuracy")),
    ):
        lines.append(f"  {key:28s} {_fmt(value)}")
    if "agreement" in val:  # an hf PRM: its held-out labels, since no exact checker exists there
        lines.append(f"  {'val label mae':28s} {_fmt(val.get('mae'))}")
        lines.append(f"  {'val label agreement':28s} {_fmt(val.get('agreement'))}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
