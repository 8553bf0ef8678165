"""Where the time of `scprospatial impute` goes: one impute_file call under cProfile, split into parts.

    python benchmarks/scale/profile_impute.py --model model.pt --input prepared.h5ad --out out.h5ad \
        (--n-proteins 300 | --all-proteins) [--device cpu|cuda] --json parts.json

Parts (seconds; the checkpoint is loaded beforehand and reported apart): open_input (backed open of the
prepared file), read (CSR rows of each chunk from disk), to_tensor (gene mapping and sparse tensor),
forward (encoders, translator and the copy back to host), write (copy of the input, the predicted
columns, embedding and uns). cProfile adds a small cost per Python call; the forward pass is a few large
torch calls per block of cells, so the split is close to that of an unprofiled run. The dense FLOPs
of the forward pass per cell are counted too (torch's FlopCounterMode), for projecting to a GPU.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import time
from pathlib import Path

# (part, file suffix, function name): cumulative times read from the profile
_PROBES = {
    "impute_file": ("model/_files.py", "impute_file"),
    "impute_backed": ("model/_files.py", "_impute_backed"),
    "read": ("model/_files.py", "<lambda>"),
    "chunks": ("model/_predict.py", "chunks"),
    "map_rna": ("", "map_rna"),
    "sparse_tensor": ("", "sparse_tensor"),
    "open_input": ("anndata/_io/h5ad.py", "read_h5ad"),
}


def cumulative(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each probe (summed over matching functions)."""
    found = dict.fromkeys(_PROBES, 0.0)
    for (filename, _, func), (_, _, _, cum, _) in stats.stats.items():
        for part, (suffix, name) in _PROBES.items():
            if func == name and filename.replace("\\", "/").endswith(suffix if suffix else filename):
                found[part] += cum
    return found


def parts(c: dict[str, float]) -> dict[str, float]:
    to_tensor = c["map_rna"] + c["sparse_tensor"]
    split = {"open_input": c["open_input"], "read": c["read"],
             "to_tensor": to_tensor, "forward": c["chunks"] - c["read"] - to_tensor,
             "write": c["impute_backed"] - c["chunks"] - c["open_input"]}
    split["other"] = c["impute_file"] - sum(split.values())
    return {k: round(v, 3) for k, v in split.items()}


def forward_flops(model, path: str, names, n_cells: int = 1024) -> tuple[float, int]:
    """Dense floating-point operations of the forward pass per cell (torch's FlopCounterMode on the first
    `n_cells` cells; the sparse RNA products are not counted, they are a small part), and the file's cells."""
    import anndata as ad
    from torch.utils.flop_counter import FlopCounterMode

    from scprospatial.model._data import GeneMapping, dataset_index, dataset_names
    src = ad.read_h5ad(path, backed="r")
    try:
        n = min(n_cells, src.n_obs)
        mapping = GeneMapping.of(src.var_names, model.vocab)
        ds = dataset_index(dataset_names(src), model.datasets)[:n]
        with FlopCounterMode(display=False) as counter:
            for _ in model._predictor().chunks(lambda a, b: src.X[a:b], n, mapping, ds, names, n):
                pass
        total = src.n_obs
    finally:
        src.file.close()
    return counter.get_total_flops() / n, total


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True, help="a prepared RNA .h5ad (read backed, streamed)")
    ap.add_argument("--out", required=True)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--n-proteins", type=int, help="the first N predictable proteins")
    which.add_argument("--all-proteins", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    import torch
    from panel import first_predictable

    from scprospatial._settings import set_threads
    from scprospatial.model import ScProSpatial, impute_file

    set_threads(args.threads)
    model = ScProSpatial.load(args.model, device=args.device)
    names = first_predictable(model, args.n_proteins if args.n_proteins else len(model.vocab.proteins))
    import_s = time.perf_counter() - t0
    profiler = cProfile.Profile()
    t1 = time.perf_counter()
    profiler.enable()
    impute_file(model, args.input, args.out, proteins=names, device=args.device)
    profiler.disable()
    wall = time.perf_counter() - t1
    c = cumulative(pstats.Stats(profiler))
    flops, n_cells = forward_flops(model, args.input, names)
    record = {"device": args.device, "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "n": n_cells, "n_proteins": len(names),
              "imports_and_model_s": round(import_s, 3), "impute_s": round(wall, 3),
              "forward_mflop_per_cell": round(flops / 1e6, 2),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "parts_s": parts(c)}
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
