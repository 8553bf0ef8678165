"""Does the joint space stay aligned through stage 3? (issue 15, item 6)

For checkpoints trained on MALT's 1,000 training cells (`bench_mapping.train_model`, the package's defaults but
for `translate_align_weight`), the validation FOSCTTM of the joint embedding (a held-out cell's RNA embedding
against its protein embedding; 0 = every cell closest to its own match, 0.5 = chance) after stage 2 (the best
alignment epoch, from the checkpoint's metrics) and after stage 3 (recomputed on the same validation cells, which
the seed determines), and the translation's validation Pearson. Development data only.

    .venv/bin/python benchmarks/bench_align.py --models w0_s0.pt w0_s1.pt w0_s2.pt w1_s0.pt w1_s1.pt w1_s2.pt \
        --seeds 0,1,2,0,1,2 --readme
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _readme import run_record, save_run  # noqa: E402
from bench_mapping import DATA  # noqa: E402

RESULTS = HERE / "results" / "stage3_alignment.json"
START, END = "<!-- bench_align:start -->", "<!-- bench_align:end -->"


def measure(path: str, seed: int, malt) -> dict:
    """FOSCTTM after stage 2 and 3 and the validation Pearson of one checkpoint trained with `seed`."""
    import torch

    from scprospatial.model import ScProSpatial
    from scprospatial.model import _model as model_module
    from scprospatial.model._data import build_pool, split_cells
    from scprospatial.train import foscttm
    from scprospatial.train._loops import Batch, embed_pair, paired

    m = ScProSpatial.load(path, device="cpu")
    pool = build_pool([malt], m.vocab, m.datasets)
    rng = np.random.default_rng(seed)   # the split ScProSpatial.train drew
    _, val = split_cells(pool, m.config.val_fraction, rng)
    val = np.sort(rng.permutation(val)[:model_module.MAX_VAL_CELLS])
    m.module.eval()
    with torch.no_grad():
        b = paired(Batch.of(pool, val, "cpu"))
        after = foscttm(*embed_pair(m.module, b, b.dataset))
    met = m.meta["metrics"]
    return {"checkpoint": Path(path).name, "model_id": m.meta.get("model_id"), "seed": seed,
            "translate_align_weight": float(m.config.translate_align_weight),
            "foscttm_after_stage2": float(met["align"]["val_foscttm"]), "foscttm_after_stage3": float(after),
            "val_pearson": float(met["translate"]["val_pearson"]), "n_validation_pairs": int(len(b.dataset))}


def readme_body(res: dict) -> str:
    lines = ["## Joint space through stage 3 (`bench_align.py`)", "",
             "Validation FOSCTTM of the joint embedding (MALT, development; lower is better, 0.5 = chance) after "
             "stage 2 and after stage 3, with and without stage 2's contrastive loss kept on the RNA projection "
             "while translating (`translate_align_weight`; the translation itself is the same either way: same "
             f"validation Pearson at the same threads). Written {res['date']}.", "", "```", res["command"], "```",
             "", "| translate_align_weight | seed | after stage 2 | after stage 3 | change | validation Pearson |",
             "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['translate_align_weight']:g} | {r['seed']} | {r['foscttm_after_stage2']:.3f} | "
                     f"{r['foscttm_after_stage3']:.3f} | {r['foscttm_after_stage3'] - r['foscttm_after_stage2']:+.3f} "
                     f"| {r['val_pearson']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="checkpoints trained on MALT's training cells")
    ap.add_argument("--seeds", required=True, help="each checkpoint's training seed (comma-separated, same order)")
    ap.add_argument("--readme", action="store_true", help="rewrite the bench_align section of benchmarks/README.md")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) != len(args.models):
        ap.error(f"{len(args.models)} checkpoints but {len(seeds)} seeds")
    if not (DATA / "citeseq").is_dir():
        print(f"bench_align: {DATA} is absent; nothing measured", file=sys.stderr)
        return 0
    from scprospatial.io import load

    malt = load(DATA / "citeseq" / "malt_10k_train_1000cells.h5ad")
    rows = [measure(p, s, malt) for p, s in zip(args.models, seeds)]
    res = run_record("bench_align", argv, rows=rows)
    save_run(RESULTS, res, readme_body(res), START, END, args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
