"""Where every folder of a run lies: the one place that names them.

A stage run alone (``sppd sample``, ``sppd score``, ...) writes ``<run_dir>/<its folder>`` unless
its ``out`` key says otherwise, and reads its inputs from the folders the stage before it writes
by default. The pipeline gives each self-training stage its own subfolder (``stage1/trees``,
``stage1/sft``, ``eval/<row>``, ...) and passes them to the stages as config keys. Both sets of
names are decided here and nowhere else, so the pipeline, the stages and ``sppd pipeline
--dry-run`` agree, and a run folder made before keeps being found (the names must not change).

Schema layer, stdlib only: the dry run resolves folders without importing any stage.
"""

from __future__ import annotations

import re
from pathlib import Path

from sppd.settings import RunConfig
from sppd.types import NO_PRM, Objective

# Stage 1's on-policy trees (pipeline.step_pairs_from=start): a pipeline stage of its own, so its
# trees/, scored/ and data/ lie in <run_dir>/stage1-onpolicy/ next to stage1/
STAGE1_ONPOLICY = "stage1-onpolicy"

# the training set each objective reads: one folder per set under the build output
DATA_SETS: dict[Objective, str] = {Objective.SFT: "sft", Objective.DPO: "dpo", Objective.STEP_DPO: "step_pairs"}


def pick(override: str | None, default: Path) -> Path:
    """A folder key's value when set, else its default."""
    return Path(override) if override else default


def slug(name: str) -> str:
    """A row or step name as one folder name (``ablation/no margin`` -> ``ablation_no_margin``)."""
    return name.replace("/", "_").replace(" ", "_")


class RunLayout:
    """The folders of the run in ``run_dir``."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)

    @classmethod
    def of(cls, cfg: RunConfig) -> RunLayout:
        return cls(cfg.run_dir)

    # -- a stage run alone: its default output folder ------------------------------------
    def trees(self) -> Path:
        return self.root / "trees"

    def scored(self) -> Path:
        return self.root / "scored"

    def data(self) -> Path:
        return self.root / "data"

    def train(self, objective: Objective | str) -> Path:
        return self.root / f"train-{Objective(objective).value}"

    def eval(self) -> Path:
        return self.root / "eval"

    def prm(self) -> Path:
        """The PRM a run trains (``sppd prm train``); scoring and the ORM methods find it here."""
        return self.root / "prm"

    def prm_report(self) -> Path:
        return self.root / "prm_report"

    # -- the pipeline ---------------------------------------------------------------------
    def stage_trees(self, stage: str) -> Path:
        """``stage``: ``stage1``, ``stage2``, ... (``STAGE1_ONPOLICY`` too)"""
        return self.root / stage / "trees"

    def stage_scored(self, stage: str) -> Path:
        return self.root / stage / "scored"

    def stage_data(self, stage: str) -> Path:
        """The build output of ``stage``: ``sft/``, ``dpo/`` and ``step_pairs/`` below it."""
        return self.root / stage / "data"

    def model(self, name: str) -> Path:
        """A model the pipeline trains: ``stage1/sft``, ``stage1/gamma-0.5``, ``control/continued``."""
        return self.root / name

    def control_data(self) -> Path:
        return self.root / "control" / "data"

    def eval_row(self, row: str) -> Path:
        return self.root / "eval" / slug(row)

    def val_row(self, row: str) -> Path:
        return self.root / "eval-val" / slug(row)

    def seed(self, k: int) -> Path:
        """The run of seed ``k`` when ``pipeline.seeds`` > 1."""
        return self.root / f"seed-{k}"

    def timings(self) -> Path:
        return self.root / "timings.json"

    def report(self) -> Path:
        return self.root / "report.md"

    def launch(self, step: str) -> Path:
        """The resolved config of a launched step; its log sits next to it (``.log``)."""
        return self.root / "launch" / f"{re.sub(r'[^A-Za-z0-9.+-]+', '_', step)}.yaml"


# -- every stage's folders from its config: the key when set, else the default -------------
def sample_out(cfg: RunConfig) -> Path:
    return pick(cfg.sample.out, RunLayout.of(cfg).trees())


def score_trees(cfg: RunConfig) -> Path:
    return pick(cfg.score.trees, RunLayout.of(cfg).trees())


def score_out(cfg: RunConfig) -> Path:
    return pick(cfg.score.out, RunLayout.of(cfg).scored())


def prm_path(cfg: RunConfig) -> Path:
    """``score.prm_path``, else the PRM the run trains."""
    return pick(cfg.score.prm_path, RunLayout.of(cfg).prm())


def eval_prm_path(cfg: RunConfig) -> Path:
    """``eval.prm_path``, else ``score.prm_path``, else the PRM the run trains."""
    return pick(cfg.eval.prm_path, prm_path(cfg))


def build_trees(cfg: RunConfig) -> Path:
    return pick(cfg.build.trees, RunLayout.of(cfg).scored())


def build_out(cfg: RunConfig) -> Path:
    return pick(cfg.build.out, RunLayout.of(cfg).data())


def train_data(cfg: RunConfig) -> Path:
    return pick(cfg.train.data, RunLayout.of(cfg).data() / DATA_SETS[Objective(cfg.train.objective)])


def train_out(cfg: RunConfig) -> Path:
    return pick(cfg.train.out, RunLayout.of(cfg).train(cfg.train.objective))


def eval_out(cfg: RunConfig) -> Path:
    return pick(cfg.eval.out, RunLayout.of(cfg).eval())


def prm_trees(cfg: RunConfig) -> list[Path]:
    return [Path(p) for p in cfg.prm.trees] or [RunLayout.of(cfg).trees()]


def prm_out(cfg: RunConfig) -> Path:
    return pick(cfg.prm.out, RunLayout.of(cfg).prm())


def prm_report_trees(cfg: RunConfig) -> Path:
    """The scored trees ``sppd prm report`` reads: ``score.out``'s folder."""
    return score_out(cfg)


def prm_report_out(cfg: RunConfig) -> Path:
    return RunLayout.of(cfg).prm_report()


def stage_folders(stage: str, cfg: RunConfig) -> tuple[dict[str, str], Path]:
    """``(inputs, output folder)`` of a stage run with ``cfg``: what ``--dry-run`` shows for it.

    Model inputs that are unset read ``<policy>`` (``model.path``, or the toy base model).
    """
    policy = cfg.model.path or "<policy>"
    t = cfg.train
    table: dict[str, tuple[dict[str, object], Path]] = {
        "sample": ({"model": policy}, sample_out(cfg)),
        "score": ({"trees": score_trees(cfg)}, score_out(cfg)),
        "build": ({"trees": build_trees(cfg)}, build_out(cfg)),
        "train": (
            {"data": train_data(cfg), "init": t.init or policy, "ref": t.ref or t.init or policy},
            train_out(cfg),
        ),
        "eval": ({"model": cfg.eval.model or policy}, eval_out(cfg)),
        "prm_train": ({"trees": ", ".join(map(str, prm_trees(cfg))), "policy": policy}, prm_out(cfg)),
        "prm_report": ({"scored": prm_report_trees(cfg)}, prm_report_out(cfg)),
    }
    inputs, out = table[stage]
    if stage == "score" and cfg.score.scorer not in ("mc", "oracle"):
        inputs["prm"] = prm_path(cfg)
    if stage == "eval" and (cfg.eval.prm or cfg.score.scorer) not in (NO_PRM, "mc", "oracle"):
        inputs["prm"] = eval_prm_path(cfg)
    return {k: str(v) for k, v in inputs.items()}, out
