"""How the pipeline runs one stage: ``(step, stage, resolved config) -> the stage's output folder``.

Every folder and model a stage reads is a config key (``sample.out``, ``score.trees``,
``eval.model``, ...; ``sppd.layout`` names the defaults), so a stage's fully resolved config
alone reruns it: ``sppd <stage> -c <resolved.yaml>``. ``pipeline.launcher`` (per stage
``pipeline.launch.<stage>.launcher``) picks where it runs:

* ``inprocess``: the stage's ``main(cfg)`` in the pipeline's process (the toy default);
* ``python``: one plain ``python -m sppd <stage> -c <run_dir>/launch/<step>.yaml`` process;
* ``accelerate``: ``accelerate launch --config_file <pipeline.accelerate_config> -m sppd <stage>
  -c <run_dir>/launch/<step>.yaml``, so vLLM and a DeepSpeed trainer never share a process.
  Stages with nothing to share out (build, prm_train, prm_report: rank 0 does all their work)
  and stages whose engine places its own weights on the GPUs (vLLM: sample, eval, score
  rollouts) run as one python process instead, unless ``pipeline.launch`` says otherwise.

A launched stage's output goes to ``<step>.log`` next to its config and to this process's
stdout; a non-zero exit stops the pipeline with one line naming the step and the log. The
pipeline then reads what it needs (metrics, records) from the stage's folder.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from sppd import layout
from sppd.config import ConfigError, dump_yaml
from sppd.errors import SppdError
from sppd.sampling.engine import loads_own_weights
from sppd.settings import RunConfig
from sppd.types import Launcher

# stage -> (its `sppd` subcommand words, the module whose main(cfg) runs it); tests check it against sppd.cli
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "sample": (("sample",), "sppd.stages.sample"),
    "score": (("score",), "sppd.stages.score"),
    "build": (("build",), "sppd.stages.build"),
    "train": (("train",), "sppd.stages.train"),
    "eval": (("eval",), "sppd.stages.eval"),
    "prm_train": (("prm", "train"), "sppd.stages.prm_train"),
    "prm_report": (("prm", "report"), "sppd.stages.prm_report"),
}
SINGLE_PROCESS = ("build", "prm_train", "prm_report")  # rank 0 does all their work: nothing to share out
# variables of an outer launcher: a launched stage must not believe it is one rank of the pipeline's world
_LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


class StageFailed(SppdError):
    """A launched stage exited with an error; the message names the step and its log."""

    exit_code = 1  # the stage's own output (and its log) says why; not a bad-input error


@dataclass(frozen=True)
class StageCall:
    """One stage run of the pipeline."""

    step: str  # the pipeline's name for it (timings, launch files): stage1/sample, eval/Base, stage1/sft/train
    stage: str  # a key of COMMANDS
    cfg: RunConfig  # fully resolved: every folder it reads or writes is a key
    when: str = ""  # the condition it runs under, where earlier results decide (shown by --dry-run)

    @property
    def launcher(self) -> Launcher:
        return launcher_for(self.stage, self.cfg)

    @property
    def out(self) -> Path:
        return layout.stage_folders(self.stage, self.cfg)[1]

    def config_path(self) -> Path:
        return layout.RunLayout.of(self.cfg).launch(self.step)


def launcher_for(stage: str, cfg: RunConfig) -> Launcher:
    """Where ``stage`` runs under ``cfg``'s pipeline settings (see the module docstring)."""
    p = cfg.pipeline
    own = p.launch.get(stage)
    if own is not None and own.launcher is not None:
        return own.launcher
    if p.launcher is not Launcher.ACCELERATE:
        return p.launcher
    if stage in SINGLE_PROCESS or _engine_places_itself(stage, cfg):
        return Launcher.PYTHON
    return Launcher.ACCELERATE


def _engine_places_itself(stage: str, cfg: RunConfig) -> bool:
    rollouts = stage == "score" and (cfg.score.mc_rollouts > 0 or cfg.score.mc_min_paths > 0)
    return (stage in ("sample", "eval") or rollouts) and loads_own_weights(cfg.sample.engine)


def accelerate_config(stage: str, cfg: RunConfig) -> str:
    """The accelerate YAML of ``stage`` (``pipeline.launch.<stage>.accelerate_config``, else the pipeline's)."""
    own = cfg.pipeline.launch.get(stage)
    return resolve_accelerate_config((own.accelerate_config if own else "") or cfg.pipeline.accelerate_config)


def resolve_accelerate_config(name: str) -> str:
    """A path as given, else the shipped ``configs/accelerate/<name>.yaml``; "" stays "" (accelerate's default)."""
    if not name:
        return ""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config key 'pipeline.accelerate_config': file not found: {name}")
        return str(path)
    shipped = resources.files("sppd") / "configs" / "accelerate" / f"{name}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"config key 'pipeline.accelerate_config': {name!r} is neither a file nor a shipped accelerate "
            "config (ddp, zero2, zero3, cpu2)"
        )
    return str(shipped)


def command(call: StageCall) -> list[str]:
    """The command that runs ``call`` (in-process: the equivalent one, as ``--dry-run`` shows it)."""
    words = COMMANDS[call.stage][0]
    sppd = ["-m", "sppd", *words, "-c", str(call.config_path())]
    if call.launcher is not Launcher.ACCELERATE:
        return [sys.executable, *sppd]
    own = call.cfg.pipeline.launch.get(call.stage)
    n = (own.num_processes if own else 0) or call.cfg.pipeline.num_processes
    config = accelerate_config(call.stage, call.cfg)
    args = [*(["--config_file", config] if config else []), *(["--num_processes", str(n)] if n else [])]
    return [*_accelerate(), "launch", *args, *sppd]


def _accelerate() -> list[str]:
    """``accelerate`` of this interpreter's environment (its module when no script is installed)."""
    script = Path(sys.executable).parent / "accelerate"
    if script.is_file():
        return [str(script)]
    found = shutil.which("accelerate")
    return [found] if found else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]


def run(call: StageCall) -> Path:
    """Run the stage; returns its output folder. A launched stage that fails raises ``StageFailed``."""
    if call.launcher is Launcher.INPROCESS:
        importlib.import_module(COMMANDS[call.stage][1]).main(call.cfg)
        return call.out
    path = call.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(call.cfg), encoding="utf-8")
    argv = command(call)
    if call.launcher is Launcher.ACCELERATE:
        argv = _with_free_port(argv, accelerate_config(call.stage, call.cfg))
    log = path.with_suffix(".log")
    code = _stream(argv, log)
    if code != 0:
        raise StageFailed(
            f"stage {call.step} ({' '.join(COMMANDS[call.stage][0])}) failed with exit {code}; log: {log}"
        )
    return call.out


def _stream(argv: list[str], log: Path) -> int:
    """Run ``argv``; its output goes to ``log`` and to stdout, line by line. Returns its exit code."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV and not k.startswith("ACCELERATE_")}
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + shlex.join(argv) + "\n")
        fh.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            sys.stdout.write(line)
        return proc.wait()


def _with_free_port(argv: list[str], config: str) -> list[str]:
    """A free rendezvous port for a one-machine launch whose config names none: two runs on one
    machine (or a previous stage's port in TIME_WAIT) would otherwise collide on accelerate's 29500."""
    settings = yaml.safe_load(Path(config).read_text()) if config else {}
    settings = settings if isinstance(settings, dict) else {}
    if settings.get("main_process_port") or int(settings.get("num_machines") or 1) > 1:
        return argv
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    at = argv.index("launch") + 1
    return [*argv[:at], "--main_process_port", str(port), *argv[at:]]
