"""``sppd toy pretrain``: train the toy base policy, or reuse the cached one for this config.

``--verify`` retrains from scratch and compares with the shipped checkpoint; ``--ship`` copies
the base model into the package's shipped checkpoints (:mod:`sppd.toy.shipped`).
"""

from __future__ import annotations

import json

from sppd import runtime
from sppd.modeling import set_threads
from sppd.settings import RunConfig


def main(cfg: RunConfig, verify: bool = False, ship: bool = False, tolerance: float = 1e-5) -> dict:
    set_threads(cfg.threads)
    if verify:
        return _verify(cfg, tolerance)
    from sppd.toy.pretrain import cached_base_model

    # shipping the shipped copy back onto itself would prove nothing: use the cache or train
    path = cached_base_model(cfg.toy, runtime.cache_root(), use_shipped=not ship)
    info = json.loads((path / "pretrain.json").read_text()) if (path / "pretrain.json").exists() else {}
    print(f"toy base model: {path}")
    for key in ("final_greedy_acc", "greedy_acc", "minutes", "wall_minutes", "params"):
        if key in info:
            print(f"  {key:20s} {info[key]}")
    if ship:
        from sppd.toy.shipped import ship as ship_folder

        shipped = ship_folder(path)
        print(f"shipped: {shipped}")
        return {"path": str(path), "shipped": str(shipped), **info}
    return {"path": str(path), **info}


def _verify(cfg: RunConfig, tolerance: float) -> dict:
    from sppd.toy.reproduce import check, format_verification, verify

    result = verify(cfg.toy, tolerance)
    print(format_verification(result))
    check(result)  # raises with a one-line reason: the command line exits non-zero
    print(f"reproduced: every tensor within {tolerance:g}")
    return {"shipped": str(result.shipped), "max_diff": max(result.tensor_diffs.values())}
