"""The PRM registry: names -> ``"module:factory"`` paths, and what a name implies.

Stdlib only, so the config schema can check ``score.scorer`` / ``eval.prm`` names when a config
loads (a typo fails then, not after hours of sampling) without importing any PRM code; the
factories are imported only by ``sppd.prm.base.build_prm``.
"""

from __future__ import annotations

# name -> "module:factory"; each factory takes keyword arguments and returns a
# ProcessRewardModel. toy, oracle and mc are implemented in their own modules.
_PRMS: dict[str, str] = {
    "skywork": "sppd.prm.skywork:build_skywork_prm",
    "qwen25-math-prm": "sppd.prm.qwen_math_prm:build_qwen_math_prm",
    "math-shepherd": "sppd.prm.math_shepherd:build_math_shepherd_prm",
    "rlhflow": "sppd.prm.rlhflow:build_rlhflow_prm",
    "toy": "sppd.prm.toy:build_toy_prm",
    "oracle": "sppd.prm.oracle:build_oracle_prm",
    "mc": "sppd.prm.mc:build_mc_prm",
}

# PRMs read from a local HF folder (``score.prm_path``), which a run must therefore set.
HF_ADAPTERS = ("skywork", "qwen25-math-prm", "math-shepherd", "rlhflow")

# PRMs a run trains itself (``sppd prm train``, on a synthetic task's labels) into ``<run_dir>/prm``:
# that folder is their default path, so the pipeline points scoring and evaluation at the PRM it trains.
_TRAINED_IN_RUN: set[str] = {"toy"}


def trained_in_run(name: str) -> bool:
    """Whether the PRM ``name`` is trained by the run (default folder ``<run_dir>/prm``)."""
    return name in _TRAINED_IN_RUN


def register_prm(name: str, dotted_path: str, *, replace: bool = False) -> None:
    """Register a PRM factory as ``"module:factory"``; it is imported only when built.

    Re-registering a name with a different path is an error unless ``replace`` is set, so two
    plugins cannot silently shadow each other.
    """
    module_name, sep, attr = dotted_path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"PRM {name!r}: dotted path must look like 'module:factory', got {dotted_path!r}")
    if name in _PRMS and _PRMS[name] != dotted_path and not replace:
        raise ValueError(f"PRM {name!r} is already registered as {_PRMS[name]!r}; pass replace=True to override")
    _PRMS[name] = dotted_path


def available_prms() -> list[str]:
    """Registered PRM names, sorted."""
    return sorted(_PRMS)
