"""The typed settings of every stage, composed into one ``RunConfig``.

One root config for all stages (rather than one file per stage) because a pipeline run shares
the model, prompt, step rule and problems between stages; each stage reads its own section.
Loading and strictness live in ``sppd.config``; this module only declares what exists. The
closed choices (enums) live in ``sppd.types``, which every layer imports without pulling this in.
Each field's comment is its one-line documentation (``sppd show-config`` prints the values).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from sppd import config as _config
from sppd.config import above, at_least, each, within
from sppd.digest import location, runtime
from sppd.toy.config import ToyPretrainConfig
from sppd.types import (
    NO_PRM,
    ChatTemplateMode,
    DType,
    Launcher,
    MarginMode,
    MCJudge,
    MixedPrecision,
    Objective,
    OptimizerName,
    OverlongRule,
    PackingMode,
    PRMBackbone,
    PRMLabel,
    RolloutNodes,
    SampleScore,
    SiblingRule,
    Stage2Init,
    StepDelimiter,
    StepPairMode,
    StepPairsFrom,
)


@dataclass
class ModelConfig:
    path: str | None = location(None)  # HF model folder; None = the cached toy base model
    dtype: DType = DType.AUTO  # weights/compute dtype
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    trust_remote_code: bool = False  # only for model folders you trust


@dataclass
class PromptConfig:
    template: str = "{question}\n"  # plain-text prompt when no chat template is used
    system: str = "Please reason step by step and put your answer in \\boxed{}."  # paper App. C
    chat_template: ChatTemplateMode = ChatTemplateMode.AUTO  # use the tokenizer's chat template


@dataclass
class StepConfig:
    delimiter: StepDelimiter = StepDelimiter.NEWLINE  # step boundary rule
    custom: str = ""  # delimiter string when delimiter=custom
    answer_pattern: str = "\\\\boxed|The answer is"  # regex: a step matching it ends the path

    def delimiter_text(self) -> str:
        """The literal string that ends a step."""
        if self.delimiter == StepDelimiter.NEWLINE:
            return "\n"
        if self.delimiter == StepDelimiter.BLANK_LINE:
            return "\n\n"
        if not self.custom:
            raise _config.ConfigError("config key 'step.custom': required when step.delimiter=custom")
        return self.custom


@dataclass
class ProblemsConfig:
    source: str = "toy"  # a task (`sppd sources`: toy, gsm8k, math, mix, math500, ...) or a path to a JSONL file
    split: str = ""  # the task's split ("" = its train split, or a JSONL file's one split); see `sppd sources`
    # Sampling (training prompts) from a test split is refused: it would train on the problems the
    # evaluation reports. Set true only on purpose (e.g. a test-time self-training experiment).
    allow_test_split: bool = runtime(False)  # a permission, not an input: not in any fingerprint
    n: int | None = None  # use the first n problems (None = all)
    question_field: str = "question"  # JSONL field names for user files
    answer_field: str = "answer"
    id_field: str = ""  # JSONL id field ("" = number problems by line)
    # A question or gold answer longer than this is refused before tokenization (a 60 MB question
    # ran the sampler out of memory); it changes what is refused, never what is written.
    max_question_chars: int = runtime(20000)  # longest question or gold answer accepted, in characters

    CHECKS: ClassVar = {"n": at_least(1), "max_question_chars": at_least(1)}


@dataclass
class SampleConfig:
    K: int = 64  # walks per problem (paper: 64)
    C: int = 2  # children per expansion (paper: 2)
    max_depth: int = 12  # a walk stops after this many steps
    max_step_tokens: int = 64  # a step is cut (finish_reason=length) after this many tokens
    max_total_tokens: int = 512  # prompt-free solution length limit along a path
    temperature: float = 1.0  # sampling temperature of expansions
    top_p: float = 1.0  # nucleus sampling of expansions
    selection_temperature: float = 1.0  # softmax temperature over children's average log-probs
    siblings: SiblingRule = SiblingRule.MERGE  # identical children of an expansion: merge | resample (README)
    sibling_tries: int = 2  # resample: most extra draws of the duplicates per expansion before merging
    engine: str = "hf"  # engine backend name (registry in sppd.sampling.engine)
    engine_batch_size: int = 256  # most sequences in one engine call
    vllm_dtype: DType = DType.BF16  # weights dtype of the vllm engine (auto: vLLM picks from the model's config)
    vllm_gpu_memory_utilization: float = runtime(0.85)  # fraction of the GPU's memory the vllm engine may take
    problems_per_shard: int = 16  # problems advanced in lockstep and written as one shard
    out: str = location("")  # output folder (default: <run_dir>/trees)

    CHECKS: ClassVar = {
        **{k: at_least(1) for k in ("K", "C", "max_depth", "max_step_tokens", "max_total_tokens")},
        **{k: at_least(1) for k in ("engine_batch_size", "problems_per_shard")},
        "temperature": at_least(0.0),
        "top_p": within(0.0, 1.0, low_open=True),
        "selection_temperature": above(0.0),
        "sibling_tries": at_least(0),
        "vllm_gpu_memory_utilization": within(0.0, 1.0, low_open=True),
    }


@dataclass
class ScoreConfig:
    scorer: str = "toy"  # PRM registry name: toy | mc | oracle | skywork | qwen25-math-prm | math-shepherd | rlhflow
    prm_path: str = location("")  # PRM folder (toy default: <run_dir>/prm)
    skywork_bos: str = "auto"  # text before the question for skywork ("auto": the tokenizer's bos, none without)
    packing: PackingMode = PackingMode.TREE  # how a token-level PRM scores a tree
    max_batch_tokens: int = runtime(16384)  # token budget of one PRM forward
    mc_min_paths: int = 0  # extra rollouts from nodes resting on fewer complete paths (0 = none)
    mc_rollouts: int = 0  # extra whole-completion rollouts from each mc_rollout_nodes node (0 = none)
    mc_rollout_nodes: RolloutNodes = RolloutNodes.BRANCHING  # which nodes get mc_rollouts
    mc_judge: MCJudge = MCJudge.OUTCOME  # correct completion for MC values: outcome | process (toy)
    mc_policy: str = location("")  # model that rolls out ("" = the model that sampled the trees, from their manifest)
    trees: str = location("")  # input trees (default: <run_dir>/trees)
    out: str = location("")  # output folder (default: <run_dir>/scored)

    CHECKS: ClassVar = {"max_batch_tokens": at_least(1), "mc_min_paths": at_least(0), "mc_rollouts": at_least(0)}


@dataclass
class PRMTrainConfig:
    trees: list[str] = location(default_factory=list)  # tree folders with MC labels (default: [<run_dir>/trees])
    out: str = location("")  # PRM folder (default: <run_dir>/prm)
    backbone: PRMBackbone = PRMBackbone.TOY  # toy: the toy PRM; hf: a Skywork-format PRM from prm.init
    init: str = location("")  # hf: local HF causal-LM or Skywork-format PRM folder to start from (its head kept)
    warmup_ratio: float = 0.1  # hf: share of the steps warmed up before the cosine decay (toy: constant lr)
    init_from_policy: bool = True  # start the backbone from the policy's weights
    epochs: int = 3  # passes over the labelled paths
    lr: float = 1e-3  # AdamW learning rate
    batch_size: int = 32  # paths per step
    min_mc_paths: int = 1  # a node's MC label is used when it rests on at least this many paths
    synthetic_solutions: int = 0  # toy: add this many checker-labelled generated solutions (sppd.prm.toy_labels)
    label: PRMLabel = PRMLabel.SOFT  # soft/hard: from MC values; process/local: the step checker (types.PRMLabel)
    val_fraction: float = 0.1  # problems held out to report PRM accuracy

    CHECKS: ClassVar = {
        "epochs": at_least(1),
        "lr": above(0.0),
        "batch_size": at_least(1),
        "min_mc_paths": at_least(0),
        "synthetic_solutions": at_least(0),
        "val_fraction": within(0.0, 1.0, high_open=True),
        "warmup_ratio": within(0.0, 1.0),
    }


@dataclass
class BuildConfig:
    trees: str = location("")  # scored trees folder (default: <run_dir>/scored)
    out: str = location("")  # output folder (default: <run_dir>/data)
    step_gap: float = 0.5  # keep a step pair only when V(s_w) - V(s_l) exceeds this
    chosen_min_value: float | None = (
        None  # SFT/DPO: keep tau_+ only when its lowest step value exceeds this (None = all)
    )
    step_pair_mode: StepPairMode = StepPairMode.THRESHOLD  # which sibling pairs to keep
    pairs_per_parent: int = 1  # most pairs per branching node (best vs worst first)
    require_complete_subtree: bool = False  # drop steps under which no complete path exists
    max_step_pairs_per_problem: int = 0  # cap per problem (0 = no cap)

    CHECKS: ClassVar = {
        "step_gap": at_least(0.0),
        "pairs_per_parent": at_least(1),
        "max_step_pairs_per_problem": at_least(0),
    }


@dataclass
class TrainConfig:
    """One training run. Under ``train:`` it is standalone ``sppd train``'s: every key not given
    there comes from the recipe's ``pipeline.<objective>`` section (see ``objective_train_settings``)."""

    objective: Objective = Objective.SFT  # sft | dpo | step_dpo
    data: str = location("")  # records folder (default: <run_dir>/data/<sft|dpo|step_pairs>)
    init: str = location("")  # model folder to start from (default: the policy, model.path or toy base)
    ref: str = location("")  # reference model folder for dpo/step_dpo (default: init)
    out: str = location("")  # output folder (default: <run_dir>/train-<objective>)
    optimizer: OptimizerName = OptimizerName.ADAMW  # paper: Adam for SFT, SGD for (step-)DPO
    lr: float = 5e-6  # peak learning rate (paper: 5e-6 SFT, 1e-5 DPO/step-DPO)
    weight_decay: float = 0.0  # decoupled weight decay
    momentum: float = 0.0  # SGD momentum
    epochs: int = 1  # passes over the data
    max_steps: int = 0  # stop after this many optimizer steps (0 = epochs decide)
    batch_size: int = 8  # examples (or pairs) per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    warmup_ratio: float = 0.1  # linear warmup share of the steps, then cosine decay
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    beta: float = 0.1  # DPO/step-DPO beta (paper: 0.1)
    margin: MarginMode = MarginMode.DYNAMIC  # step-DPO margin mode
    gamma: float = 1.0  # dynamic margin scale (paper sweeps 0.1..5)
    fixed_margin: float = 0.0  # margin when margin=fixed
    label_smoothing: float = 0.0  # conservative DPO smoothing
    chosen_nll_weight: float = 0.0  # dpo/step_dpo: + w * per-token NLL of the chosen side (RPO; 0 = the paper)
    max_length: int = 1024  # longest prompt+completion in tokens
    overlong: OverlongRule = OverlongRule.DROP  # what to do with longer examples
    prefix_sharing: bool = True  # step pairs: prefix once, chosen and rejected side by side
    mixed_precision: MixedPrecision = MixedPrecision.AUTO  # auto (bf16 on GPU, no on CPU) | no | bf16 | fp16
    gradient_checkpointing: bool = runtime(False)  # trade compute for memory on big models
    save_every: int = runtime(0)  # checkpoint every N optimizer steps (0 = only at the end)
    log_every: int = runtime(1)  # metrics line every N optimizer steps
    # l2_from_start on metric lines at multiples of this step (and always the last): one pass reading the init
    # folder's weights (7B bf16: ~15 GB from the page cache, a few seconds; no extra memory). 0 = last step only.
    l2_every: int = runtime(10)
    trackers: list[str] = runtime(default_factory=list)  # accelerate trackers (tensorboard, wandb, ...)
    seed: int = 0  # data order and init seed

    CHECKS: ClassVar = {
        "lr": above(0.0),
        "weight_decay": at_least(0.0),
        "momentum": within(0.0, 1.0, high_open=True),
        "epochs": at_least(1),
        **{k: at_least(0) for k in ("max_steps", "save_every", "log_every")},
        **{k: at_least(1) for k in ("batch_size", "grad_accum", "max_length")},
        **{k: at_least(0.0) for k in ("max_grad_norm", "gamma", "chosen_nll_weight")},
        "warmup_ratio": within(0.0, 1.0),
        "min_lr_ratio": within(0.0, 1.0),
        "beta": above(0.0),
        "label_smoothing": within(0.0, 0.5, high_open=True),
    }


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(
        default_factory=lambda: ["toy"]
    )  # toy | gsm8k | math500 | gaokao2023en | ocw | olympiadbench | JSONL path
    n_problems: int = 0  # first n problems of each benchmark (0 = all)
    n_samples: int = 8  # N of MAJ@N, ORM_VOTE@N, ORM_MAX@N, pass@N (0 = greedy only)
    temperature: float = 0.7  # sampling temperature of the N samples
    top_p: float = 1.0  # nucleus sampling of the N samples
    max_new_tokens: int = 2048  # generation limit (paper: 2048)
    batch_size: int = 128  # most sequences per engine call
    problems_per_shard: int = 64  # problems per resumable output shard
    prm: str = ""  # PRM name for ORM methods ("" = score.scorer, "none" = skip ORM methods; checked at load)
    prm_path: str = location("")  # PRM folder ("" = score.prm_path, toy default <run_dir>/prm)
    sample_score: SampleScore = SampleScore.LAST  # which step score stands for a sample: last | min | mean
    bootstrap: int = 1000  # bootstrap resamples for 95% intervals
    grade_timeout_s: float = 5.0  # per-answer grading timeout (math-verify in worker processes)
    grade_workers: int = runtime(2)  # math-verify worker processes of the grader (speed only)
    model: str = location("")  # model folder to evaluate (default: the policy)
    out: str = location("")  # output folder (default: <run_dir>/eval)

    CHECKS: ClassVar = {
        **{k: at_least(0) for k in ("n_problems", "n_samples", "bootstrap")},
        **{k: at_least(1) for k in ("max_new_tokens", "batch_size", "problems_per_shard", "grade_workers")},
        "temperature": at_least(0.0),
        "top_p": within(0.0, 1.0, low_open=True),
        "grade_timeout_s": above(0.0),
        "benchmarks": lambda names: None if names else "must name at least one benchmark",
    }


def _train(objective: Objective, optimizer: OptimizerName, lr: float) -> TrainConfig:
    return TrainConfig(objective=objective, optimizer=optimizer, lr=lr)


# the stages the pipeline launches (keys of pipeline.launch); `sppd pipeline --dry-run` lists each call
LAUNCHED_STAGES = ("sample", "score", "build", "train", "eval", "prm_train", "prm_report")


@dataclass
class StageLaunch:
    """How one stage is launched, where it differs from the pipeline's ``launcher`` and accelerate settings."""

    launcher: Launcher | None = None  # None: pipeline.launcher, with its rules (see PipelineConfig.launcher)
    accelerate_config: str = ""  # "" = pipeline.accelerate_config (e.g. zero2 for the trainer, ddp elsewhere)
    num_processes: int = 0  # accelerate --num_processes (0 = pipeline.num_processes)


@dataclass
class PipelineConfig:
    stages: int = 2  # self-training stages (Stage 2 resamples with the Stage-1 SPPD model)
    sft: TrainConfig = field(default_factory=lambda: _train(Objective.SFT, OptimizerName.ADAMW, 5e-6))  # SFT-PRM
    dpo: TrainConfig = field(default_factory=lambda: _train(Objective.DPO, OptimizerName.SGD, 1e-5))  # DPO-PRM
    step_dpo: TrainConfig = field(default_factory=lambda: _train(Objective.STEP_DPO, OptimizerName.SGD, 1e-5))  # SPPD
    sentence_level: bool = True  # run SFT-PRM and DPO-PRM before step-DPO (False: Instruct models, §6.3)
    train_prm: bool = True  # toy world: train the toy PRM on the Stage-1 trees' MC labels
    margin_ablation: bool = True  # Table 4: fixed and no margin from the same DPO model and data
    gammas: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 5.0])  # Figure 2 sweep ([] = skip)
    ablation_eval_samples: int = 0  # N for ablation/sweep evals (0 = eval.n_samples)
    control: bool = True  # toy world: continue pretraining for the same compute (a control row)
    seeds: int = 1  # repeat the whole pipeline with seeds seed..seed+N-1 and report mean and std
    val_benchmark: str = ""  # held-out set for model selection, greedy only (toy: toy-val; "" = none)
    val_problems: int = 400  # problems of val_benchmark
    stage2_init: Stage2Init = Stage2Init.BEST_VAL  # the model Stage 2 resamples with
    # Whose step pairs Stage 1's step-DPO runs (+SPPD, ablate-fixed/none, gamma-*) train on. base: the
    # base model's Stage-1 trees (the paper), which the DPO-PRM model mostly ranks right already.
    # start: on-policy pairs from new trees their start model (+DPO-PRM) samples on the same problems,
    # scored and built like Stage 1's (stage1-onpolicy/): one more sample + score + build.
    step_pairs_from: StepPairsFrom = StepPairsFrom.BASE
    # How each stage runs. inprocess: in the pipeline's process (the toy default). python: each stage
    # as one plain `python -m sppd <stage> -c <run_dir>/launch/<step>.yaml` process. accelerate: each
    # stage under `accelerate launch`, so vLLM and a DeepSpeed trainer never share a process; there
    # the stages with nothing to share out (build, prm_train, prm_report) and a stage whose engine
    # places its own weights (sample.engine=vllm: sample, eval, score rollouts) run as one python
    # process instead. `sppd pipeline --dry-run` prints every stage's command.
    launcher: Launcher = runtime(Launcher.INPROCESS)
    # The next three set the trainer's world (processes x train.batch_size x grad_accum is its global
    # batch; ZeRO or DDP), so unlike the launcher they are not declared runtime.
    accelerate_config: str = ""  # YAML path or shipped name (ddp, zero2, zero3, cpu2); "" = accelerate's default
    num_processes: int = 0  # accelerate --num_processes (0 = the accelerate config's)
    launch: dict[str, StageLaunch] = field(default_factory=dict)  # per stage, e.g. {train: {accelerate_config: zero2}}

    def __post_init__(self):
        unknown = sorted(set(self.launch) - set(LAUNCHED_STAGES))
        if unknown:
            raise ValueError(
                f"pipeline.launch: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(LAUNCHED_STAGES)}"
            )

    CHECKS: ClassVar = {
        **{k: at_least(1) for k in ("stages", "seeds")},
        **{k: at_least(0) for k in ("ablation_eval_samples", "val_problems")},
        "gammas": each(at_least(0.0)),
    }


@dataclass
class RunConfig:
    """Everything a run needs; ``sppd show-config`` prints it resolved."""

    run_dir: str = location("runs/default")  # folder holding every stage's artifact folder
    seed: int = 0  # global seed; shards derive theirs from it
    threads: int = runtime(0)  # torch CPU threads (0 = all cores)
    toy: ToyPretrainConfig = field(default_factory=ToyPretrainConfig)  # the toy world and its base model
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    step: StepConfig = field(default_factory=StepConfig)
    problems: ProblemsConfig = field(default_factory=ProblemsConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    prm: PRMTrainConfig = field(default_factory=PRMTrainConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    CHECKS: ClassVar = {"threads": at_least(0)}


def load_run_config(name_or_path: str, overrides: list[str] | None = None) -> RunConfig:
    """The resolved, validated config of a run (``train`` resolved by ``objective_train_settings``)."""
    data = _config.apply_overrides(_config.load_yaml_chain(name_or_path), list(overrides or []))
    cfg = objective_train_settings(_config.build(RunConfig, data), data.get("train"))
    check_prm_names(cfg)
    return cfg


def objective_train_settings(cfg: RunConfig, explicit: dict | None) -> RunConfig:
    """``cfg`` with ``train`` = the recipe's ``pipeline.<train.objective>`` section, the keys given
    explicitly under ``train:`` (YAML or ``train.key=value``) on top.

    So ``sppd train`` and ``sppd pipeline`` read one place for what an objective trains with (the
    paper's SGD 1e-5 for DPO lives in ``pipeline.dpo`` only), and a resolved config saved by a stage
    (every ``train`` key explicit) resolves to itself.
    """
    explicit = dict(explicit or {})
    objective = Objective(explicit.get("objective", cfg.train.objective))
    recipe = _config.to_dict(getattr(cfg.pipeline, objective.value))
    return dataclasses.replace(cfg, train=_config.build(TrainConfig, {**recipe, **explicit}, "train"))


def check_prm_names(cfg: RunConfig) -> None:
    """``score.scorer`` and ``eval.prm`` must name registered PRMs (``eval.prm`` may also be "" or
    "none"), so a typo fails at load rather than after hours of sampling. The registry is an open
    set: register a plugin PRM (``sppd.prm.registry.register_prm``) before loading a config that uses it."""
    from sppd.prm.registry import available_prms

    known = available_prms()
    if cfg.score.scorer not in known:
        raise _config.ConfigError(f"config key 'score.scorer': {cfg.score.scorer!r} is not one of: {', '.join(known)}")
    if cfg.eval.prm not in ("", NO_PRM, *known):
        raise _config.ConfigError(
            f"config key 'eval.prm': {cfg.eval.prm!r} is not one of: {', '.join([NO_PRM, *known])} "
            "(or empty for score.scorer)"
        )
