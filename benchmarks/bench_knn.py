"""Spatial kNN graph benchmark: scprospatial's grid kernel vs scipy cKDTree(workers=-1) + CSR assembly
vs scikit-learn NearestNeighbors vs squidpy.gr.spatial_neighbors, side by side in one run.

The coordinates of each (size, layout) are generated once and saved to a .npy file that every method reads.
Each (size, layout, method) runs in its own subprocess so peak memory (ru_maxrss, which also sees C++
allocations) belongs to that method alone; times are medians of --repeats runs after one warm-up.
squidpy runs in the peer tools' venv (benchmarks/.venv-peers, see benchmarks/peers/setup.sh), never in
the package's. Bars (issue 4, 10^6 cells, k = 10, both layouts): >= 8x cKDTree, >= 25x squidpy, extra
peak memory <= 2x the output's size plus the input's.

    .venv/bin/python benchmarks/bench_knn.py --sizes 1000000 --repeats 5 --readme
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
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("scprospatial", "scprospatial-cuda", "ckdtree", "sklearn", "squidpy")
LAYOUTS = ("uniform", "clustered")
ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "knn.json"
START, END = "<!-- bench_knn:start -->", "<!-- bench_knn:end -->"
BARS = {"ckdtree": 8.0, "squidpy": 25.0}  # minimum speed-ups of scprospatial at 10^6 cells


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
    """One method on the coordinates in args.points (.npy), in this process: prints a JSON line."""
    run_method(args.method, make_points(2000, "uniform"), args.k, args.threads)  # imports out of the peak
    x = np.load(args.points)
    args.n = len(x)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    graph = run_method(args.method, x, args.k, args.threads)  # warm-up (imports, page faults)
    assert graph.shape == (args.n, args.n) and graph.nnz == args.n * args.k, graph.nnz
    del graph
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        graph = run_method(args.method, x, args.k, args.threads)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # all threads: a fair ratio when other jobs share the cores
        del graph
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times_s": times, "cpu_s": cpu, "peak_rss_mb": peak_kb / 1024,
                      "extra_rss_mb": (peak_kb - base_kb) / 1024}))


def available(method: str) -> bool:
    """squidpy only when the peer venv has it, the CUDA kernel only when compiled in and a GPU is visible."""
    if method == "scprospatial-cuda":
        from scprospatial import _ext

        core = _ext.core()
        return bool(core is not None and core.compiled_with_cuda() and core.cuda_device_count() > 0)
    if method != "squidpy":
        return True
    return PEERS_PYTHON.is_file() and subprocess.run([str(PEERS_PYTHON), "-c", "import squidpy"],
                                                     capture_output=True).returncode == 0


def output_mb(n: int, k: int) -> float:
    """The CSR graph: int32 indptr and indices, float64 distances."""
    return (4 * (n + 1) + 12 * n * k) / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated point counts")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--methods", default=",".join(METHODS), help="squidpy is skipped when not installed")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="threads for scprospatial (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS), help="JSON results")
    p.add_argument("--readme", action="store_true", help="rewrite the bench_knn section of benchmarks/README.md")
    p.add_argument("--readme-only", action="store_true", help="rewrite the section from --out without measuring")
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "POINTS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.method, args.points = args.worker
        worker(args)
        return 0

    if args.readme_only:
        from _readme import rebuild_section

        rebuild_section(args.out, section, START, END)
        return 0
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if available(m)]
    results = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for layout in args.layouts.split(","):
                points = Path(tmp) / f"{layout}_{n}.npy"
                np.save(points, make_points(n, layout, args.seed))
                for method in methods:
                    python = str(PEERS_PYTHON) if method == "squidpy" else sys.executable
                    cmd = [python, __file__, "--worker", method, str(points), "--k", str(args.k),
                           "--repeats", str(args.repeats)]
                    if args.threads:
                        cmd += ["--threads", str(args.threads)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        print(f"{method} n={n} {layout} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                        continue
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    row.update(n=n, layout=layout, method=method, median_s=statistics.median(row["times_s"]),
                               min_s=min(row["times_s"]), median_cpu_s=statistics.median(row["cpu_s"]),
                               output_mb=output_mb(n, args.k), input_mb=n * 16 / 2**20)
                    results.append(row)
                    print(f"  {method:>12} n={n:>8} {layout:>9}: median {row['median_s']:.3f} s", file=sys.stderr)

    print(markdown(results))
    meta = {"k": args.k, "repeats": args.repeats, "threads": args.threads, "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "machine": platform.platform(), "python": platform.python_version(),
            "command": "python benchmarks/bench_knn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "load_avg": [load_before, os.getloadavg()[0]]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "results": results}, fh, indent=1)
    if args.readme:
        from _readme import put_section

        put_section(section(results, meta), START, END)
    return 0


def speedups(results: list[dict], method: str = "scprospatial") -> dict:
    """(n, layout, peer) -> peer's median / method's median."""
    ours = {(r["n"], r["layout"]): r["median_s"] for r in results if r["method"] == method}
    return {(r["n"], r["layout"], r["method"]): r["median_s"] / ours[r["n"], r["layout"]]
            for r in results if (r["n"], r["layout"]) in ours and r["method"] != method}


def markdown(results: list[dict]) -> str:
    ref = {(r["n"], r["layout"]): r["median_s"] for r in results if r["method"] == "ckdtree"}
    lines = ["| points | layout | method | median s | min s | vs cKDTree | CPU s (all threads) | peak RSS MB | "
             "extra RSS MB | extra / (2 x output + input) |", "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        base = ref.get((r["n"], r["layout"]))
        speed = f"{base / r['median_s']:.1f}x" if base else "-"
        bound = 2 * r.get("output_mb", 0) + r.get("input_mb", 0)
        ratio = f"{r['extra_rss_mb'] / bound:.2f}" if bound else "-"
        lines.append(f"| {r['n']:,} | {r['layout']} | {r['method']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{speed} | {r['median_cpu_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['extra_rss_mb']:.0f} | "
                     f"{ratio} |")
    return "\n".join(lines)


def section(results: list[dict], meta: dict) -> str:
    """The bench_knn README section: bars at 10^6 cells, then the table."""
    lines = [f"## Spatial kNN graph (k = {meta['k']})", ""]
    ups = speedups(results)
    for r in (r for r in results if r["method"] == "scprospatial" and r["n"] >= 1_000_000):
        checks = []
        for peer, bar in BARS.items():
            up = ups.get((r["n"], r["layout"], peer))
            if up is not None:
                checks.append(f"{up:.1f}x {peer} (bar {bar:.0f}x: {'met' if up >= bar else 'NOT met'})")
        bound = 2 * r["output_mb"] + r["input_mb"]
        checks.append(f"extra peak {r['extra_rss_mb']:.0f} MB of {bound:.0f} MB allowed "
                      f"({'met' if r['extra_rss_mb'] <= bound else 'NOT met'})")
        lines.append(f"- {r['n']:,} {r['layout']} cells: " + "; ".join(checks))
    lines += ["", markdown(results), "",
              f"Command: `{meta['command']}`  ",
              f"Machine: {meta['machine']}, {meta['cpu_count']} CPUs (affinity {meta['affinity']}); medians of "
              f"{meta['repeats']} runs after a warm-up, each method in its own process (squidpy in the peers' venv)."]
    if max(meta.get("load_avg", [0])) > (meta["affinity"] or meta["cpu_count"]):
        lines.append(f"Provisional: other jobs shared the CPUs (1-minute load average "
                     f"{meta['load_avg'][0]:.1f} before, {meta['load_avg'][1]:.1f} after); "
                     "CPU seconds give the fairer ratios.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
