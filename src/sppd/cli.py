"""Command line: ``sppd <stage> --config NAME_OR_PATH key.sub=value ...``.

No logic lives here: each subcommand resolves the typed config and calls a stage's ``main``.
Stages are imported only when run, so ``sppd show-config`` stays quick. An expected failure
(``sppd.errors.SppdError``: a bad config key, a malformed file, a locked folder; or an ``OSError``
such as a full disk) is one line on stderr and exit code 2; ``--debug``
shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from sppd.config import ConfigError
from sppd.errors import SppdError

# subcommand -> (module, help)
STAGES: dict[str, tuple[str, str]] = {
    "sample": ("sppd.stages.sample", "grow one sampling tree per problem (paper §4.2)"),
    "eval": ("sppd.stages.eval", "Greedy / MAJ@N / ORM_VOTE@N / ORM_MAX@N on benchmarks"),
    "pipeline": (
        "sppd.stages.pipeline",
        "the whole method: sample, score, build, SFT, DPO, SPPD, Stage 2, ablations, report",
    ),
    "demo": ("sppd.stages.demo", "the pipeline on the toy world, then print the main table and the report path"),
    "score": ("sppd.stages.score", "attach a PRM (or Monte-Carlo) value to every node of every tree"),
    "train": ("sppd.stages.train", "train the policy: objective=sft|dpo|step_dpo"),
    "build": ("sppd.stages.build", "turn scored trees into SFT, DPO and step-pair sets (paper §4.1, §4.3, §5)"),
}
# ``sppd toy <action>``
TOY_ACTIONS: dict[str, tuple[str, str]] = {
    "pretrain": ("sppd.stages.toy_pretrain", "train (or reuse the cached) toy base model"),
}
# ``sppd prm <action>``
PRM_ACTIONS: dict[str, tuple[str, str]] = {
    "train": ("sppd.stages.prm_train", "train a PRM on the trees' labels (toy, or an HF model: prm.backbone=hf)"),
    "report": ("sppd.stages.prm_report", "PRM diagnostics: Table 5 / Figure 3 analogues, agreement with the checker"),
}
GROUPS = {"toy": ("the embedded toy arithmetic world", TOY_ACTIONS), "prm": ("process reward models", PRM_ACTIONS)}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default="toy", help="shipped config name or YAML path (default: toy)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def _add_stage_args(p: argparse.ArgumentParser) -> None:
    _add_config_args(p)
    p.add_argument(
        "--rerun-stale",
        action="store_true",
        help="move a stage folder made with another config to <folder>.stale-<n> and redo it "
        "(default: stop with an error naming the changed keys)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sppd", description="SPPD: self-training with process preference learning")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an expected error too")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show-config", help="print the resolved config")
    _add_config_args(show)
    sub.add_parser("sources", help="list the problem sources (tasks) with their splits and problem counts")
    for name, (_, help_text) in STAGES.items():
        stage = sub.add_parser(name, help=help_text)
        _add_stage_args(stage)
        if name in ("pipeline", "demo"):
            stage.add_argument("--seeds", type=int, default=None, help="repeat with N seeds (= pipeline.seeds=N)")
        if name == "pipeline":
            stage.add_argument(
                "--dry-run",
                action="store_true",
                help="print every stage in order (its command, problems, input and output folders) and exit; "
                "runs nothing, loads no model",
            )
    for group, (group_help, actions) in GROUPS.items():
        group_sub = sub.add_parser(group, help=group_help).add_subparsers(dest="action", required=True)
        for name, (_, help_text) in actions.items():
            action = group_sub.add_parser(name, help=help_text)
            _add_stage_args(action)
            if (group, name) in ACTION_ARGS:
                ACTION_ARGS[group, name](action)
    return parser


def _add_pretrain_args(p: argparse.ArgumentParser) -> None:
    """``sppd toy pretrain --verify | --ship``; the stage's ``main`` takes them as keywords."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify",
        action="store_true",
        help="pretrain from scratch in a temporary folder and compare with the shipped checkpoint "
        "(exit 1 when a tensor differs beyond --tolerance, 2 when none is shipped for this config)",
    )
    mode.add_argument(
        "--ship",
        action="store_true",
        help="copy the cached (else freshly trained) base model into the shipped checkpoints",
    )
    p.add_argument(
        "--tolerance", type=float, default=1e-5, help="--verify: max |difference| per tensor (default 1e-5)"
    )
    p.set_defaults(stage_kwargs=("verify", "ship", "tolerance"))


# (group, action) -> adds that action's own flags; ``stage_kwargs`` names those its ``main`` takes
ACTION_ARGS = {("toy", "pretrain"): _add_pretrain_args}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except SppdError as exc:  # bad input: the message names the file/line/field or the key
        kind = "config error" if isinstance(exc, ConfigError) else "error"
        return _fail(args, kind, exc, getattr(exc, "exit_code", 2))
    except OSError as exc:  # the environment: a full disk, a missing or unreadable file
        return _fail(args, "error", exc, 2)
    finally:
        from sppd import locking

        locking.release_all()


def _fail(args: argparse.Namespace, kind: str, exc: BaseException, code: int) -> int:
    """One line on stderr (the traceback too with ``--debug``); returns the exit code."""
    if args.debug:
        traceback.print_exception(exc)
    # a multi-line message (a stale folder lists what changed) is joined, so stderr has one line
    message = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
    message = message or type(exc).__name__
    print(f"sppd: {kind}: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.command == "sources":
        from sppd.tasks import format_sources

        print(format_sources())
        return 0
    from sppd.config import dump_yaml
    from sppd.settings import load_run_config

    overrides = list(args.overrides)
    if getattr(args, "seeds", None) is not None:
        overrides.append(f"pipeline.seeds={args.seeds}")
    cfg = load_run_config(args.config, overrides)
    if args.command == "show-config":
        print(dump_yaml(cfg), end="")
        return 0
    module = GROUPS[args.command][1][args.action][0] if args.command in GROUPS else STAGES[args.command][0]
    from sppd.stages import common

    if getattr(args, "dry_run", False):
        return _dry_run(cfg)
    previous = common.set_rerun_stale(args.rerun_stale or common.rerun_stale())
    try:
        importlib.import_module(module).main(cfg, **{k: getattr(args, k) for k in getattr(args, "stage_kwargs", ())})
    finally:
        common.set_rerun_stale(previous)
    return 0


def _dry_run(cfg) -> int:
    """``sppd pipeline --dry-run``: the plan, nothing run."""
    from sppd.stages.pipeline import dry_run

    print(dry_run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
