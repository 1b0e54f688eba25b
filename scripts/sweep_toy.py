"""Choose a training stage's learning rate and length on the toy VALIDATION split (never test).

How the toy defaults in ``configs/toy.yaml`` were picked. Run after a pipeline run has made the
Stage-1 data and models, e.g.::

    sppd pipeline -c toy run_dir=runs/exp pipeline.stages=1 pipeline.margin_ablation=false \
        'pipeline.gammas=[]' pipeline.control=false
    python scripts/sweep_toy.py --run-dir runs/exp --stage dpo --lrs 5e-4 1e-3 2e-3 --epochs 1 2
    python scripts/sweep_toy.py --run-dir runs/exp --stage step_dpo --init runs/exp/stage1/dpo ...

Each setting trains from the same initial model on the same data (a resumable ``sppd train``
folder under ``<run-dir>/sweep``) and is scored by greedy accuracy on ``toy-val``; the table
and ``sweep-<stage>.json`` list every setting tried, so the choice can be checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from sppd.settings import load_run_config
from sppd.types import NO_PRM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True, help="pipeline run folder holding stage1/data and the models")
    ap.add_argument("--config", default="toy")
    ap.add_argument("--stage", choices=["sft", "dpo", "step_dpo"], required=True)
    ap.add_argument("--init", default="", help="model to start from (default: the pipeline's previous stage)")
    ap.add_argument("--data", default="", help="records folder (default: <run-dir>/stage1/data/<kind>)")
    ap.add_argument("--lrs", type=float, nargs="+", required=True)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1])
    ap.add_argument("--val-problems", type=int, default=400)
    ap.add_argument("--tag", default="", help="added to the output folder names (e.g. which data)")
    ap.add_argument("--extra", nargs="*", default=[], help="more config overrides, e.g. pipeline.step_dpo.gamma=2")
    args = ap.parse_args()

    from sppd.stages import eval as eval_stage
    from sppd.stages import train

    root = Path(args.run_dir)
    cfg = load_run_config(args.config, [f"run_dir={root}", *args.extra])
    base = {"sft": cfg.pipeline.sft, "dpo": cfg.pipeline.dpo, "step_dpo": cfg.pipeline.step_dpo}[args.stage]
    if args.stage == "sft" and not args.init:
        raise SystemExit("--init is required for sft (the base model folder)")
    init = args.init or str(root / "stage1" / {"dpo": "sft", "step_dpo": "dpo"}[args.stage])
    data = args.data or str(
        root / "stage1" / "data" / {"sft": "sft", "dpo": "dpo", "step_dpo": "step_pairs"}[args.stage]
    )
    val_cfg = dataclasses.replace(
        cfg,
        eval=dataclasses.replace(
            cfg.eval, benchmarks=["toy-val"], n_samples=0, n_problems=args.val_problems, prm=NO_PRM
        ),
    )

    def val_acc(model: str, name: str) -> float:
        metrics = eval_stage.main(val_cfg, model_path=model, out_dir=str(root / "sweep-val" / name))
        return metrics["toy-val"]["greedy"]["acc"]

    rows = [{"setting": "start (no training)", "val_greedy": val_acc(init, f"start-{Path(init).name}")}]
    for lr in args.lrs:
        for epochs in args.epochs:
            name = f"{args.stage}{'-' + args.tag if args.tag else ''}-lr{lr:g}-ep{epochs}" + "".join(
                f"-{x}" for x in args.extra
            ).replace("/", "_")
            t = dataclasses.replace(
                base,
                lr=lr,
                epochs=epochs,
                init=init,
                ref=init,
                data=data,
                out=str(root / "sweep" / name),
                seed=cfg.seed,
            )
            summary = train.main(dataclasses.replace(cfg, train=t))
            rows.append(
                {
                    "setting": name,
                    "lr": lr,
                    "epochs": epochs,
                    "steps": summary.get("steps"),
                    "final_loss": summary.get("final_loss"),
                    "val_greedy": val_acc(t.out, name),
                }
            )
    print(f"\n{args.stage} sweep from {init} on {data} (greedy accuracy on toy-val, {args.val_problems} problems)")
    print("| setting | val greedy |\n|---|---:|")
    for row in rows:
        print(f"| {row['setting']} | {100 * row['val_greedy']:.1f} |")
    out = root / f"sweep-{args.stage}.json"
    old = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(old + rows, indent=1))


if __name__ == "__main__":
    main()
