"""Mapping's search-and-mixture on a GPU: what keeping the arrays on the device saves (GPU machines only).

One mapping pass of n_query imaged cells over n_ref scRNA-seq cells in blocks of --block rows (as map_cells runs it):
top-k search (dim, k), softmax weights, mixture of p predicted proteins. Side by side, in one process:

  cpu           the C++ kernels on the host (--threads), what `map --device cpu` runs
  torch-gpu     torch's top-k on the GPU, mixture by the C++ CPU kernel: what `map --device cuda` ran before
  cuda-copies   the CUDA kernels on host arrays (each call copies its inputs to the GPU and its outputs back)
  cuda-resident the CUDA kernels on torch CUDA tensors, chained (spatial/_device.py): what `map --device cuda` runs

Inputs: seeded random unit rows and float32 profiles. Times are medians of --repeats passes after one warm-up pass;
every backend's top-k indices are compared with the cpu backend's (the CUDA ones must be identical).

    python benchmarks/bench_device.py --nq 200000 --nr 100000 --p 300 --threads 16 --out results.json

Writes benchmarks/results/device.json (or --out) and, with --readme, the bench_device section of
benchmarks/README.md (--readme-only: from --out without measuring).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- bench_device:start -->", "<!-- bench_device:end -->"
BACKENDS = ("cpu", "torch-gpu", "cuda-copies", "cuda-resident")
TEMPERATURE = 0.07


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_search(backend: str, q, r, mean, sd, args):
    """search(rows, out_mean, out_sd) -> (idx, w, sim), as map_cells calls it."""
    from scprospatial.spatial._device import DeviceSearch
    from scprospatial.spatial._gather import gather_mixture
    from scprospatial.spatial._mapping import _HostSearch, softmax_weights, topk_similarity

    if backend == "cuda-resident":
        return DeviceSearch(q, r, mean, sd, k=args.k, temperature=TEMPERATURE, device="cuda")
    if backend == "cuda-copies":
        def search(rows, out_mean, out_sd):
            idx, sim, _ = topk_similarity(q[rows], r, args.k, backend="cuda")
            w = softmax_weights(sim, TEMPERATURE)
            gather_mixture(idx, w, mean, sd, as_sd=True, backend="cuda", out=(out_mean, out_sd))
            return idx, w, sim

        return search
    topk, device = {"cpu": ("cpp", "cpu"), "torch-gpu": ("torch", "cuda")}[backend]
    return _HostSearch(q, r, mean, sd, k=args.k, temperature=TEMPERATURE, backend=topk, threads=args.threads,
                       device=device)


def one_pass(search, nq: int, block: int, p: int):
    out_mean, out_sd = np.empty((nq, p), np.float32), np.empty((nq, p), np.float32)
    parts = []
    for q0 in range(0, nq, block):
        rows = slice(q0, min(q0 + block, nq))
        i, _, _ = search(rows, out_mean[rows], out_sd[rows])
        parts.append(i)
    return np.concatenate(parts), out_mean


def measure(args) -> list[dict]:
    import torch

    from scprospatial import _ext

    torch.set_num_threads(args.threads)
    q, r = unit_rows(args.nq, args.dim, 1), unit_rows(args.nr, args.dim, 2)
    rng = np.random.default_rng(3)
    mean = rng.standard_normal((args.nr, args.p)).astype(np.float32)
    sd = rng.gamma(2.0, 0.3, (args.nr, args.p)).astype(np.float32)
    rows, ref_idx = [], None
    for backend in args.backends.split(","):
        why = (None if backend == "cpu" else "torch sees no GPU" if not torch.cuda.is_available()
               else None if backend == "torch-gpu" else _ext.cuda_unavailable_reason())
        if why is not None:
            print(f"  {backend}: skipped ({why})", file=sys.stderr)
            continue
        search = make_search(backend, q, r, mean, sd, args)
        one_pass(search, min(args.nq, args.block), args.block, args.p)  # warm-up: CUDA context, first copies
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            idx, _ = one_pass(search, args.nq, args.block, args.p)
            times.append(time.perf_counter() - t0)
        if ref_idx is None and backend == "cpu":
            ref_idx = idx
        same = None if ref_idx is None else bool(np.array_equal(idx, ref_idx))
        device = torch.cuda.get_device_name(0) if backend != "cpu" else platform.processor() or platform.machine()
        row = {"backend": backend, "device": device, "nq": args.nq, "nr": args.nr, "dim": args.dim, "k": args.k,
               "p": args.p, "block": args.block, "threads": args.threads, "times_s": times,
               "median_s": statistics.median(times), "same_topk_as_cpu": same}
        rows.append(row)
        print(f"  {backend:>13}: median {row['median_s']:.2f} s, top-k as cpu: {same}", file=sys.stderr)
        del search
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| imaged x scRNA-seq cells | dim | k | proteins | block | backend | device | median s | top-k = cpu |",
             "|---|---:|---:|---:|---:|---|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['nq']:,} x {r['nr']:,} | {r['dim']} | {r['k']} | {r['p']} | {r['block']:,} | "
                     f"{r['backend']} | {r['device']} | {r['median_s']:.2f} | {r['same_topk_as_cpu']} |")
    return "\n".join(lines)


def section(rows: list[dict], meta: dict) -> str:
    return ("### Mapping's search and mixture on a GPU (`benchmarks/bench_device.py`)\n\n"
            f"Measured with `{meta['command']}` on {meta['machine']}.\n\n" + markdown(rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nq", type=lambda s: int(float(s)), default=200_000, help="imaged cells")
    p.add_argument("--nr", type=lambda s: int(float(s)), default=100_000, help="scRNA-seq cells")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--p", type=int, default=300, help="predicted proteins")
    p.add_argument("--block", type=int, default=65536, help="imaged cells per block (map_cells' QUERY_BLOCK)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", default=",".join(BACKENDS), help="cpu first: the others are compared with it")
    p.add_argument("--out", default=str(RESULTS / "device.json"))
    p.add_argument("--readme", action="store_true", help="rewrite the bench_device section of benchmarks/README.md")
    p.add_argument("--readme-only", action="store_true", help="rewrite the section from --out without measuring")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if args.readme_only:
        from _readme import rebuild_section

        rebuild_section(args.out, section, START, END)
        return 0
    rows = measure(args)
    from _readme import publish

    command = "python benchmarks/bench_device.py " + " ".join(argv if argv is not None else sys.argv[1:])
    publish(Path(args.out), rows, lambda r: (r["backend"], r["device"], r["nq"], r["nr"]), command,
            table=markdown, section=section, readme=args.readme, start=START, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
