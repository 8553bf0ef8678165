"""Spatial kNN graph benchmark: scprospatial's grid kernel vs scipy cKDTree(workers=-1) + CSR assembly
vs scikit-learn NearestNeighbors (and squidpy when installed), side by side in one run.

Each (size, layout, method) runs in its own subprocess so peak memory (ru_maxrss, which also sees C++
allocations) belongs to that method alone; times are medians of --repeats runs after one warm-up.

    python benchmarks/bench_knn.py --sizes 100000,1000000 --repeats 5 --out bench_knn.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

METHODS = ("scprospatial", "scprospatial-cuda", "ckdtree", "sklearn", "squidpy")
LAYOUTS = ("uniform", "clustered")


def make_points(n: int, layout: str, seed: int = 0) -> np.ndarray:
    """n unsorted 2-D cell positions, ~10 units apart on average (pixels of a tissue section)."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(n) * 10.0
    if layout == "uniform":
        return rng.random((n, 2)) * side
    # clustered: dense blobs of very different widths on a sparse background, shuffled
    n_bg = n // 10
    centres = rng.random((50, 2)) * side
    widths = side * np.geomspace(0.002, 0.05, 50)
    which = rng.integers(0, 50, n - n_bg)
    blobs = centres[which] + rng.normal(size=(n - n_bg, 2)) * widths[which, None]
    pts = np.concatenate([blobs, rng.random((n_bg, 2)) * side])
    return pts[rng.permutation(n)]


def run_method(method: str, x: np.ndarray, k: int, threads: int | None):
    from scipy import sparse

    n = len(x)
    if method == "scprospatial":
        from scprospatial.spatial import knn_graph

        return knn_graph(x, k, backend="cpp", threads=threads)
    if method == "scprospatial-cuda":
        from scprospatial.spatial import knn_graph

        return knn_graph(x, k, backend="cuda")
    if method == "ckdtree":
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(x).query(x, k + 1, workers=-1)
        return sparse.csr_matrix((dist[:, 1:].ravel(), idx[:, 1:].ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    if method == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        return NearestNeighbors(n_neighbors=k, n_jobs=-1).fit(x).kneighbors_graph(mode="distance")
    if method == "squidpy":
        import anndata as ad
        import squidpy as sq

        adata = ad.AnnData(obsm={"spatial": x}, shape=(n, 0))
        sq.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=k)
        return adata.obsp["spatial_distances"]
    raise ValueError(method)


def worker(args) -> None:
    """One method on one data set, in this process: prints a JSON line."""
    run_method(args.method, make_points(2000, args.layout), args.k, args.threads)  # imports out of the peak
    x = make_points(args.n, args.layout, args.seed)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    graph = run_method(args.method, x, args.k, args.threads)  # warm-up (imports, page faults)
    assert graph.shape == (args.n, args.n) and graph.nnz == args.n * args.k, graph.nnz
    del graph
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        graph = run_method(args.method, x, args.k, args.threads)
        times.append(time.perf_counter() - t0)
        del graph
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times_s": times, "peak_rss_mb": peak_kb / 1024, "extra_rss_mb": (peak_kb - base_kb) / 1024}))


def available(method: str) -> bool:
    """squidpy only when installed, the CUDA kernel only when compiled in and a GPU is visible."""
    if method == "scprospatial-cuda":
        from scprospatial import _ext

        core = _ext.core()
        return bool(core is not None and core.compiled_with_cuda() and core.cuda_device_count() > 0)
    if method != "squidpy":
        return True
    try:
        import squidpy  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated point counts")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--methods", default=",".join(METHODS), help="squidpy is skipped when not installed")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="threads for scprospatial (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_knn.json", help="JSON results")
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "LAYOUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.method, n, args.layout = args.worker
        args.n = int(float(n))
        worker(args)
        return 0

    sizes = [int(float(s)) for s in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if available(m)]
    results = []
    for n in sizes:
        for layout in args.layouts.split(","):
            for method in methods:
                cmd = [sys.executable, __file__, "--worker", method, str(n), layout, "--k", str(args.k),
                       "--repeats", str(args.repeats), "--seed", str(args.seed)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{method} n={n} {layout} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row.update(n=n, layout=layout, method=method, median_s=statistics.median(row["times_s"]),
                           min_s=min(row["times_s"]))
                results.append(row)
                print(f"  {method:>12} n={n:>8} {layout:>9}: median {row['median_s']:.3f} s", file=sys.stderr)

    print(markdown(results))
    meta = {"k": args.k, "repeats": args.repeats, "threads": args.threads, "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "machine": platform.platform(), "python": platform.python_version()}
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "results": results}, fh, indent=1)
    return 0


def markdown(results: list[dict]) -> str:
    ref = {(r["n"], r["layout"]): r["median_s"] for r in results if r["method"] == "ckdtree"}
    lines = ["| points | layout | method | median s | min s | vs cKDTree | peak RSS MB | extra RSS MB |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        base = ref.get((r["n"], r["layout"]))
        speed = f"{base / r['median_s']:.1f}x" if base else "-"
        lines.append(f"| {r['n']:,} | {r['layout']} | {r['method']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{speed} | {r['peak_rss_mb']:.0f} | {r['extra_rss_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
