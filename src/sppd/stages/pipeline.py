"""``sppd pipeline``: the whole SPPD method as a chain of resumable stages, then a report.

(toy pretrain) -> sample trees with the base policy -> (train the toy PRM) -> score -> build ->
SFT-PRM -> DPO-PRM (from and referenced to SFT) -> SPPD step-DPO with the dynamic margin (from
DPO) -> Stage 2 (resample with the SPPD model, score, build, step-DPO again), evaluating after
every stage. Ablations from the same DPO-PRM model and data: fixed and no margin (Table 4) and a
gamma sweep (Figure 2; ``sppd.stages.ablations``); on the toy world a control row continues
pretraining for the same compute. With ``pipeline.step_pairs_from=start`` the step-DPO runs of
Stage 1 learn from on-policy pairs: trees the DPO-PRM model samples anew (``stage1-onpolicy``).
Every stage writes its own folder and is skipped when complete, so a killed pipeline resumes
where it stopped. ``report.md`` is written from the numbers of this run only.

Each stage run is a ``launch.StageCall`` (step name, stage, fully resolved config) whose folders
come from ``sppd.layout``; ``pipeline.launcher`` decides whether it runs in this process or as
its own (``accelerate launch``) process(es). ``sppd pipeline --dry-run`` prints the plan.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

from sppd import runtime
from sppd.config import ConfigError
from sppd.io import StageDir, atomic_write_json
from sppd.layout import STAGE1_ONPOLICY, RunLayout
from sppd.records import SFTExample
from sppd.report_rows import ReportRow, RowKind, save_rows
from sppd.settings import LAUNCHED_STAGES, RunConfig, TrainConfig
from sppd.stages import common, launch
from sppd.stages.ablations import run_ablations
from sppd.stages.launch import StageCall
from sppd.types import NO_PRM, Launcher, Objective, Stage2Init, StepPairsFrom


class Timer:
    """Wall time per pipeline step, kept in ``timings.json`` (skipped steps cost ~0 s).

    Every process times its steps; under ``accelerate launch`` only rank 0 writes the file.
    """

    def __init__(self, path: Path):
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, fn):
        start = time.perf_counter()
        result = fn()
        spent = time.perf_counter() - start
        if spent > 1.0 or name not in self.times:  # keep the real time of a step a rerun skipped
            self.times[name] = round(spent, 1)
        if runtime.rank_and_world()[0] == 0:
            atomic_write_json(self.path, self.times)
        return result


class Pipeline:
    """One seed's run of the method; ``rows`` types the evaluations the report shows."""

    def __init__(self, cfg: RunConfig, dry_run: bool = False):
        from sppd.prm.registry import trained_in_run

        self.layout = RunLayout.of(cfg)
        self.root = self.layout.root
        self.task = check_sources(cfg)  # before any work: a bad name or a test split stops the run here
        self.prm_dir = str(self.layout.prm())  # a PRM the run trains (ORM methods; the scorer when it is one)
        prm_path = self.prm_dir if trained_in_run(cfg.score.scorer) and not cfg.score.prm_path else cfg.score.prm_path
        eval_prm = cfg.eval.prm_path or (self.prm_dir if trained_in_run(cfg.eval.prm or cfg.score.scorer) else "")
        self.cfg = dataclasses.replace(
            cfg,
            score=dataclasses.replace(cfg.score, prm_path=prm_path),
            eval=dataclasses.replace(cfg.eval, prm_path=eval_prm),
        )
        self.timer = Timer(self.layout.timings())
        self.plan: list[StageCall] | None = [] if dry_run else None  # --dry-run: the calls, none run
        self.evals: dict[str, dict] = {}
        self.rows: list[ReportRow] = []  # in evaluation order; saved as rows.json for the report
        self.val: dict[str, float] = {}  # row -> greedy accuracy on pipeline.val_benchmark
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.stage2_from = "+SPPD"  # the Stage-1 row Stage 2 resamples with (stage2_start)

    # -- stage wrappers ------------------------------------------------------------------
    def launch(self, step: str, stage: str, cfg: RunConfig, when: str = "") -> Path:
        """Run one stage (``--dry-run``: record it); returns its output folder."""
        call = StageCall(step, stage, cfg, when)
        if self.plan is not None:
            self.plan.append(call)
            return call.out
        return self.timer.run(step, lambda: launch.run(call))

    def sample(self, stage: str, model: str, when: str = "", seed_of: str = "") -> Path:
        """Trees of ``model`` in ``stage``'s folder, seeded as stage ``seed_of`` (default: ``stage``)."""
        c = self.cfg
        out = self.layout.stage_trees(stage)
        cfg = dataclasses.replace(
            c,
            seed=runtime.derive_seed(c.seed, seed_of or stage),
            model=dataclasses.replace(c.model, path=model),
            sample=dataclasses.replace(c.sample, out=str(out)),
        )
        return self.launch(f"{stage}/sample", "sample", cfg, when)

    def score_and_build(self, stage: str, trees: Path, when: str = "") -> Path:
        c = self.cfg
        scored, data = self.layout.stage_scored(stage), self.layout.stage_data(stage)
        cfg = dataclasses.replace(c, score=dataclasses.replace(c.score, trees=str(trees), out=str(scored)))
        self.launch(f"{stage}/score", "score", cfg, when)
        cfg = dataclasses.replace(c, build=dataclasses.replace(c.build, trees=str(scored), out=str(data)))
        return self.launch(f"{stage}/build", "build", cfg, when)

    def train(self, name: str, tcfg: TrainConfig, data: Path, init: str, ref: str | None = None, **changes) -> str:
        out = self.layout.model(name)
        when = f"runs only when {data} holds training records"
        if self.plan is None and not any(True for _ in StageDir(data).iter_records()):
            # e.g. a weak policy produced no correct path: nothing to learn from, keep the model
            print(f"pipeline: {name}: no training records in {data}; skipped (model stays {init})")
            self.skipped.append(f"{name}: no training records in {data}")
            return init
        t = dataclasses.replace(
            tcfg, data=str(data), init=init, ref=ref or init, out=str(out), seed=self.cfg.seed, **changes
        )
        self.launch(f"{name}/train", "train", dataclasses.replace(self.cfg, train=t), when)
        return str(out)

    def evaluate(
        self, row: str, kind: RowKind, model: str, start: str | None, n_samples: int | None = None, **fields
    ) -> dict:
        """Evaluate ``model`` as report row ``row`` (``fields``: the row's gamma or margin)."""
        n = n_samples or self.cfg.eval.n_samples
        self.rows.append(ReportRow(row, kind, model, start, n, **fields))
        same = [r.name for r in self.rows[:-1] if r.model == model and r.n == n]
        if same:  # a skipped step leaves the model unchanged: its evaluation is the same
            self.evals[row] = self.evals[same[0]]
            return self.evals[row]
        e = dataclasses.replace(self.cfg.eval, model=model, out=str(self.layout.eval_row(row)))
        e = e if n_samples is None else dataclasses.replace(e, n_samples=n_samples)
        self.evals[row] = self.metrics(self.launch(f"eval/{row}", "eval", dataclasses.replace(self.cfg, eval=e)))
        return self.evals[row]

    def metrics(self, folder: Path) -> dict:
        """An evaluation's ``metrics.json`` (``{}`` in a dry run)."""
        return {} if self.plan is not None else json.loads((folder / "metrics.json").read_text())

    def validate(self, row: str, model: str) -> float | None:
        """Greedy accuracy on the validation set (model selection without the test set)."""
        p = self.cfg.pipeline
        if not p.val_benchmark:
            return None
        same = [r.name for r in self.rows if r.model == model and r.name in self.val]
        if same:
            self.val[row] = self.val[same[0]]
            return self.val[row]
        e = dataclasses.replace(
            self.cfg.eval,
            benchmarks=[p.val_benchmark],
            n_problems=p.val_problems,
            n_samples=0,
            prm=NO_PRM,
            model=model,
            out=str(self.layout.val_row(row)),
        )
        metrics = self.metrics(self.launch(f"val/{row}", "eval", dataclasses.replace(self.cfg, eval=e)))
        if self.plan is not None:
            return None
        self.val[row] = metrics[p.val_benchmark]["greedy"]["acc"]
        return self.val[row]

    def stage2_start(self, chain: list[tuple[str, str]]) -> str:
        """The model Stage 2 resamples with: the SPPD model, or the best Stage-1 model on validation."""
        p = self.cfg.pipeline
        if p.stage2_init == Stage2Init.SPPD or not p.val_benchmark:
            self.stage2_from = chain[-1][0]
            return chain[-1][1]
        scored = [(self.validate(row, model), -i, row, model) for i, (row, model) in enumerate(chain)]
        if self.plan is not None:  # chosen when the validation accuracies exist
            self.stage2_from = f"the best Stage-1 model on {p.val_benchmark}"
            return f"<{self.stage2_from}>"
        acc, _, row, model = max(scored)  # ties go to the earlier (less trained) model
        self.stage2_from = row
        self.notes.append(
            f"Stage 2 starts from {row} (best greedy accuracy on {p.val_benchmark}: "
            f"{100 * acc:.1f}%; " + ", ".join(f"{r} {100 * a:.1f}%" for a, _, r, _ in scored) + ")"
        )
        return model

    # -- the method ----------------------------------------------------------------------
    def base_model(self) -> str:
        """``model.path``, or the toy base model (pretrained here, in this process, when not cached)."""
        if self.plan is not None:
            return self.cfg.model.path or "<toy base model>"

        def policy() -> str:  # a toy base model is pretrained by rank 0 alone; the others then find it cached
            runtime.on_rank0(lambda: common.policy_path(self.cfg))
            return str(common.policy_path(self.cfg))

        return self.timer.run("toy/pretrain", policy)

    def run(self) -> dict:
        p, c = self.cfg.pipeline, self.cfg
        base = self.base_model()
        trees = self.sample("stage1", base)
        if self.task.synthetic and p.train_prm:  # the toy PRM learns from the world's labels
            cfg = dataclasses.replace(
                c,
                prm=dataclasses.replace(c.prm, trees=[str(trees)], out=self.prm_dir),
                model=dataclasses.replace(c.model, path=base),
            )
            self.launch("stage1/prm_train", "prm_train", cfg)
        data = self.score_and_build("stage1", trees)
        self.evaluate("Base", RowKind.BASE, base, None)  # after the PRM exists: ORM methods need it
        scored = str(self.layout.stage_scored("stage1"))
        self.launch(
            "stage1/prm_report", "prm_report", dataclasses.replace(c, score=dataclasses.replace(c.score, out=scored))
        )
        dpo = base
        chain = [("Base", base)]  # the Stage-1 models, in order (candidates for Stage 2's start)
        if p.sentence_level:  # Instruct models skip the sentence-level warm-up (§6.3)
            sft = self.train("stage1/sft", p.sft, data / "sft", base)
            self.evaluate("SFT-PRM", RowKind.SFT, sft, "Base")
            dpo = self.train("stage1/dpo", p.dpo, data / "dpo", sft)
            self.evaluate("+DPO-PRM", RowKind.DPO, dpo, "SFT-PRM")
            chain += [("SFT-PRM", sft), ("+DPO-PRM", dpo)]
        dpo_row = chain[-1][0]  # +DPO-PRM, or Base where the sentence-level warm-up is skipped
        pairs = self.step_pairs(data, dpo, dpo_row, base)
        sppd = self.train("stage1/sppd", p.step_dpo, pairs, dpo)
        self.evaluate("+SPPD", RowKind.SPPD, sppd, dpo_row)
        chain.append(("+SPPD", sppd))
        run_ablations(self, pairs, dpo, sppd, dpo_row)
        if self.task.synthetic and p.control:  # the control continues pretraining on the world's corpus
            self.control(base)
        model = self.stage2_start(chain) if p.stages >= 2 else sppd
        prev = self.stage2_from
        for stage in range(2, p.stages + 1):
            name = f"stage{stage}"
            when = f"{name} resamples with {self.stage2_from if stage == 2 else prev} (known at run time)"
            stage_data = self.score_and_build(name, self.sample(name, model, when), when)
            model = self.train(f"{name}/sppd", p.step_dpo, stage_data / "step_pairs", model)
            self.evaluate(f"+SPPD-Stage{stage}", RowKind.STAGE, model, prev)
            prev = f"+SPPD-Stage{stage}"
        return self.summary()

    def step_pairs(self, data: Path, start: str, start_row: str, base: str) -> Path:
        """The step pairs Stage 1's step-DPO runs train on (``pipeline.step_pairs_from``).

        ``start``: new trees ``start`` samples on the Stage-1 problems (the Stage-1 seed draws the
        same generated problems), scored and built like Stage 1's. Where Base is the start model,
        the Stage-1 trees already are its own (resampled with that seed they would be the same).
        """
        if self.cfg.pipeline.step_pairs_from is StepPairsFrom.BASE:
            return data / "step_pairs"
        if start == base:
            self.notes.append("step_pairs_from=start: Base is the step-DPO start model, so its Stage-1 pairs are used")
            return data / "step_pairs"
        when = f"on-policy step pairs (pipeline.step_pairs_from=start): sampled by {start_row}, {start}"
        trees = self.sample(STAGE1_ONPOLICY, start, when, seed_of="stage1")
        self.notes.append(
            f"Stage 1's step-DPO runs train on on-policy step pairs: trees {start_row} sampled on the "
            f"Stage-1 problems ({STAGE1_ONPOLICY}/)"
        )
        return self.score_and_build(STAGE1_ONPOLICY, trees, when) / "step_pairs"

    def control(self, base: str) -> None:
        """Continue pretraining on the (noisy) base corpus for as many tokens as self-training used."""
        tokens = sum(_train_tokens(self.layout.model(name)) for name in ("stage1/sft", "stage1/dpo", "stage1/sppd"))
        if tokens <= 0 and self.plan is None:
            self.skipped.append("control: self-training processed no tokens, so there is no compute to match")
            return
        data = self.layout.control_data()
        if self.plan is None:  # written here by rank 0: the tokens self-training used
            runtime.on_rank0(lambda: StageDir(data).is_complete() or write_corpus_records(self.cfg, data, tokens))
        toy = self.cfg.toy
        tcfg = dataclasses.replace(
            self.cfg.pipeline.sft, objective=Objective.SFT, lr=toy.lr * toy.min_lr_ratio, epochs=1
        )
        model = self.train("control/continued", tcfg, data, base)
        self.evaluate("Control: base + continued pretraining", RowKind.CONTROL, model, "Base")

    def summary(self) -> dict:
        if self.plan is not None:
            return {"run_dir": str(self.root), "plan": self.plan}
        if runtime.rank_and_world()[0] == 0:  # the report reads it after main's barrier
            save_rows(self.root, self.rows)
        return {
            "run_dir": str(self.root),  # its rows.json says what each row of ``evals`` is
            "evals": self.evals,
            "timings": self.timer.times,
            "skipped": self.skipped,
            "val": self.val,
            "notes": self.notes,
        }


def check_sources(cfg: RunConfig):
    """The training task; every evaluation name must resolve too (one-line errors naming the key)."""
    from sppd.tasks import benchmark_task, training_task

    for name in cfg.eval.benchmarks:
        benchmark_task(cfg, name)
    if cfg.pipeline.val_benchmark:
        benchmark_task(cfg, cfg.pipeline.val_benchmark, key="pipeline.val_benchmark")
    return training_task(cfg)[0]


def _train_tokens(folder: Path) -> int:
    """Tokens a training run processed, from its summary (0 if unknown)."""
    for name in ("train_summary.json", "manifest.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data = data.get("counts", data)
            for key in ("tokens", "train_tokens", "total_tokens"):
                if key in data:
                    return int(data[key])
    return 0


def write_corpus_records(cfg: RunConfig, folder: Path, tokens: int) -> None:
    """SFT records drawn like the pretraining corpus (same noise), about ``tokens`` tokens in all."""
    from sppd.toy.world import corrupt_steps, format_solution, generate_problems

    rng = random.Random(runtime.derive_seed(cfg.seed, "control"))
    problems = generate_problems(cfg.toy.world, "train", 20000, seed=cfg.seed + 99)
    records, total = [], 0
    for problem in problems:
        if total >= max(tokens, 1):
            break
        steps, _ = corrupt_steps(problem.question, cfg.toy.world, rng)
        completion = format_solution(steps, steps[-1].result)
        total += len(problem.question) + len(completion) + 6
        records.append(
            SFTExample(
                id=f"control-{problem.id}",
                problem_id=problem.id,
                prompt=problem.question,
                completion=completion,
                steps=completion.split("\n"),
            ).to_dict()
        )
    out = StageDir(folder)
    out.write_shard("sft", 0, records)
    out.write_manifest(
        "control-data", counts={"examples": len(records), "approx_tokens": total}, inputs={"target_tokens": tokens}
    )


def check_launch(cfg: RunConfig) -> None:
    """Before any work: the keys the stages will need are set, and launched stages are not nested
    in a launcher of the pipeline's own (each would start its own world of processes)."""
    from sppd.stages.plan import unset_keys

    if missing := unset_keys(cfg):
        raise ConfigError(f"config key {missing[0]!r}: required (a local folder); unset: {', '.join(missing)}")
    launched = [s for s in LAUNCHED_STAGES if launch.launcher_for(s, cfg) is not Launcher.INPROCESS]
    if launched and runtime.rank_and_world()[1] > 1:
        raise ConfigError(
            f"config key 'pipeline.launcher': {cfg.pipeline.launcher} starts the processes of "
            f"{', '.join(launched)} itself; run `sppd pipeline` as one plain process, not under accelerate launch"
        )


def dry_run(cfg: RunConfig) -> str:
    """The plan of ``sppd pipeline --dry-run``: every stage call in order, none run, no model loaded."""
    from sppd.stages.plan import render

    pipe = Pipeline(cfg, dry_run=True)
    return render(cfg, pipe.run()["plan"])


def main(cfg: RunConfig) -> dict:
    """Run the pipeline (``pipeline.seeds`` times) and write ``report.md``; returns the summaries."""
    from sppd.reporting import write_report

    seeds = max(1, cfg.pipeline.seeds)
    runs = []
    for k in range(seeds):
        run_cfg = (
            cfg if seeds == 1 else dataclasses.replace(cfg, seed=cfg.seed + k, run_dir=str(RunLayout.of(cfg).seed(k)))
        )
        check_launch(run_cfg)
        runs.append(Pipeline(run_cfg).run())
    if runtime.rank_and_world()[0] == 0:
        print(f"\nreport: {write_report(cfg, runs)}")
    runtime.barrier()  # no process returns before the report exists
    return {"runs": runs, "report": str(RunLayout.of(cfg).report())}
