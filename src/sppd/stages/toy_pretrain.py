"""``sppd toy pretrain``: train the toy base policy, or reuse the cached one for this config."""

from __future__ import annotations

import json

from sppd import runtime
from sppd.modeling import set_threads
from sppd.settings import RunConfig


def main(cfg: RunConfig) -> dict:
    set_threads(cfg.threads)
    from sppd.toy.pretrain import cached_base_model

    path = cached_base_model(cfg.toy, runtime.cache_root())
    info = json.loads((path / "pretrain.json").read_text()) if (path / "pretrain.json").exists() else {}
    print(f"toy base model: {path}")
    for key in ("final_greedy_acc", "greedy_acc", "minutes", "wall_minutes", "params"):
        if key in info:
            print(f"  {key:20s} {info[key]}")
    return {"path": str(path), **info}
