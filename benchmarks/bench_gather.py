"""Weighted gather-average benchmark (mapping's mixture over each imaged cell's top-k scRNA-seq cells).

n imaged cells x k neighbours over m scRNA-seq cells x p predicted proteins (mean and SD profiles, float32,
seeded random; indices uniform, softmax-like weights in float64 as mapping makes them). Side by side:

  cpp          scprospatial._core.gather_mixture (C++ kernel, --threads threads)
  scipy        spatial._gather with backend='scipy' (the reference: CSR @ float64 copies, by column chunks)
  mixture-old  mapping's former mixture(): CSR @ whole-matrix float64 copies (run only when its estimated
               peak fits --max-gb; otherwise listed as skipped with the estimate)
  cpp-cuda     the CUDA twin (GPU machines only)

Each backend runs in its own freshly started worker (the parent imports neither numpy's users nor the
package, so its own RSS does not leak into the worker's ru_maxrss). Times are medians of --repeats after a
small warm-up; "extra MB" is peak RSS minus the RSS once the inputs exist (outputs included). The workers
also hash their outputs, so the table says whether the backends agreed bit for bit.

    .venv/bin/python benchmarks/bench_gather.py --n 100000 --m 100000 --p 300,3000 --k 10 --threads 2 --readme

Writes benchmarks/results/gather.json (or --out) and the bench_gather section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- bench_gather:start -->", "<!-- bench_gather:end -->"
BACKENDS = ("cpp", "scipy", "mixture-old", "cpp-cuda")


def make_inputs(n: int, k: int, m: int, p: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, (n, k), dtype=np.int64)
    z = rng.standard_normal((n, k)) * 2
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = rng.standard_normal((m, p), dtype=np.float32)
    sd = rng.random((m, p), dtype=np.float32)
    return idx, w, mean, sd


def mixture_old(idx, w, mean, sd):
    """mapping.mixture() before the kernel, verbatim (weights_matrix + CSR @ float64 copies)."""
    import numpy as np
    from scipy import sparse

    n, k = idx.shape
    weights = sparse.csr_matrix((w.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, len(mean)))
    m = np.asarray(weights @ mean.astype(np.float64))
    second = np.asarray(weights @ (sd.astype(np.float64) ** 2 + mean.astype(np.float64) ** 2))
    return m.astype(np.float32), np.sqrt(np.maximum(second - m ** 2, 0.0)).astype(np.float32)


def old_peak_gb(n: int, m: int, p: int) -> float:
    """Estimated peak of mixture_old: inputs + outputs (float32) + float64 result, copies and temporaries."""
    return (2 * m * p * 4 + 2 * n * p * 4 + 2 * n * p * 8 + 3 * m * p * 8) / 2**30


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_backend(backend: str, idx, w, mean, sd, threads: int):
    if backend == "mixture-old":
        m, s = mixture_old(idx, w, mean, sd)
        return m, s
    from scprospatial.spatial._gather import gather_mixture

    be = {"cpp": "cpp", "scipy": "scipy", "cpp-cuda": "cuda"}[backend]
    got = gather_mixture(idx, w, mean, sd, as_sd=True, backend=be, threads=threads)
    return got.mean, got.var


def worker(args) -> None:
    """One backend at one size in this process: prints a JSON line."""
    import hashlib
    import resource

    import numpy as np

    from scprospatial import _ext

    core = _ext.core()
    if args.backend in ("cpp", "cpp-cuda") and core is None:
        print(json.dumps({"skipped": "extension not built"}))
        return
    if args.backend == "cpp-cuda" and not (core.compiled_with_cuda() and core.cuda_device_count() > 0):
        print(json.dumps({"skipped": "no CUDA build or device"}))
        return
    idx, w, mean, sd = make_inputs(args.n, args.k, args.m, args.p)
    run_backend(args.backend, idx[:64], w[:64], mean, sd, args.threads)  # imports, page faults of the code
    rss0 = rss_mb()
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        om, osd = run_backend(args.backend, idx, w, mean, sd, args.threads)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if _ < args.repeats - 1:
            del om, osd
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest = hashlib.sha1(np.ascontiguousarray(om).data).hexdigest()[:12] + "/" + \
        hashlib.sha1(np.ascontiguousarray(osd).data).hexdigest()[:12]
    print(json.dumps({"times_s": times, "cpu_s": cpu, "peak_rss_mb": peak, "rss_inputs_mb": rss0,
                      "extra_mb": peak - rss0, "digest": digest,
                      "inputs_mb": (idx.nbytes + w.nbytes + mean.nbytes + sd.nbytes) / 2**20,
                      "outputs_mb": (om.nbytes + osd.nbytes) / 2**20}))


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=lambda s: int(float(s)), default=100_000, help="output (imaged) cells")
    p.add_argument("--m", type=lambda s: int(float(s)), default=100_000, help="profile (scRNA-seq) cells")
    p.add_argument("--p", default="300,3000", help="proteins, comma-separated sizes")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", default=",".join(BACKENDS), help="unavailable ones are skipped")
    p.add_argument("--max-gb", type=float, default=None,
                   help="skip mixture-old above this estimated peak (default: half of MemAvailable)")
    p.add_argument("--out", default=str(RESULTS / "gather.json"))
    p.add_argument("--readme", action="store_true", help="rewrite the bench_gather section of benchmarks/README.md")
    p.add_argument("--readme-only", action="store_true", help="rewrite the section from --out without measuring")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.backend, args.p = args.worker, int(args.p)
        worker(args)
        return 0
    command = "python benchmarks/bench_gather.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    if args.readme_only:
        from _readme import rebuild_section

        rebuild_section(out, section, START, END)
        return 0
    max_gb = args.max_gb if args.max_gb is not None else mem_available_gb() / 2
    rows = []
    for size in (int(float(s)) for s in args.p.split(",")):
        for backend in args.backends.split(","):
            base = dict(backend=backend, n=args.n, m=args.m, p=size, k=args.k, threads=args.threads, command=command)
            if backend == "mixture-old" and old_peak_gb(args.n, args.m, size) > max_gb:
                why = (f"estimated peak {old_peak_gb(args.n, args.m, size):.1f} GB > {max_gb:.1f} GB allowed "
                       "(--max-gb; shared machine)")
                print(f"  p={size} {backend}: skipped ({why})", file=sys.stderr)
                rows.append({**base, "skipped": why})
                continue
            load0 = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--worker", backend] + [f"--{a}={getattr(args, a)}" for a in
                                                                      ("n", "m", "k", "threads", "repeats")]
            proc = subprocess.run(cmd + [f"--p={size}"], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"  p={size} {backend} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                rows.append({**base, "skipped": "failed: " + proc.stderr.strip().splitlines()[-1][:200]})
                continue
            row = {**base, **json.loads(proc.stdout.strip().splitlines()[-1])}
            if "skipped" in row:
                print(f"  p={size} {backend}: skipped ({row['skipped']})", file=sys.stderr)
                continue  # not measurable on this machine: older rows from a machine that could are kept
            row.update(median_s=statistics.median(row["times_s"]), load_avg=[load0, os.getloadavg()[0]],
                       device=device_name(backend))
            rows.append(row)
            print(f"  p={size} {backend:>11}: median {row['median_s']:.2f} s, peak {row['peak_rss_mb']:.0f} MB, "
                  f"extra {row['extra_mb']:.0f} MB, digest {row['digest']}", file=sys.stderr)

    from _readme import merge_results

    key = lambda r: (r["backend"], r.get("device", ""), r["n"], r["m"], r["p"], r["k"])  # noqa: E731
    rows, meta = merge_results(out, rows, key, command)
    print(markdown(rows))
    if args.readme:
        from _readme import put_section

        put_section(section(rows, meta), START, END)
    return 0


def device_name(backend: str) -> str:
    if "cuda" in backend:
        try:
            import torch

            return torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001
            return "cuda"
    return platform.processor() or platform.machine()


def markdown(rows: list[dict]) -> str:
    lines = ["| imaged x k over RNA x proteins | backend | threads | median s | CPU s | peak RSS MB | extra MB | "
             "outputs MB | same bits as cpp | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    ref = {(r["n"], r["m"], r["p"], r["k"]): r["digest"] for r in rows if r["backend"] == "cpp" and "digest" in r}
    order = {b: i for i, b in enumerate(BACKENDS)}
    for r in sorted(rows, key=lambda r: (r["p"], r["n"], r["m"], order.get(r["backend"], 9))):
        size = f"{r['n']:,} x {r['k']} over {r['m']:,} x {r['p']:,}"
        if "skipped" in r:
            lines.append(f"| {size} | {r['backend']} | | skipped: {r['skipped']} | | | | | | |")
            continue
        same = ref.get((r["n"], r["m"], r["p"], r["k"]))
        same = "-" if r["backend"] == "cpp" or same is None else ("yes" if same == r["digest"] else "NO")
        lines.append(f"| {size} | {r['backend']} | {r['threads'] if 'cuda' not in r['backend'] else '-'} | "
                     f"{r['median_s']:.2f} | {statistics.median(r['cpu_s']):.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['extra_mb']:.0f} | {r['outputs_mb']:.0f} | {same} | {max(r['load_avg']):.1f} |")
    return "\n".join(lines)


def section(rows: list[dict], meta: dict) -> str:
    commands = list(dict.fromkeys(r["command"] for r in rows))
    speed = []
    for r in rows:
        if r["backend"] != "cpp" or "median_s" not in r:
            continue
        for other in rows:
            if other["backend"] in ("scipy", "mixture-old") and "median_s" in other and \
                    (other["n"], other["m"], other["p"], other["k"]) == (r["n"], r["m"], r["p"], r["k"]):
                speed.append(f"{r['n']:,} x {r['m']:,} x {r['p']:,}: {other['median_s'] / r['median_s']:.1f}x "
                             f"{other['backend']} "
                             f"in wall time, {statistics.median(other['cpu_s']) / statistics.median(r['cpu_s']):.1f}x "
                             "in CPU time")
    busy = any(max(r.get("load_avg", [0])) > (meta.get("cpu_count") or 1) for r in rows)
    return ("## Weighted gather-average kernel (mapping mixture)\n\n"
            "Mapping gives every imaged cell the mixture of its k scRNA-seq neighbours' predicted proteomes "
            "(mean = sum w mu, var = sum w (sd^2 + mu^2) - mean^2). The C++ kernel reads the float32 profiles in "
            "place and sums in float64 per output row; the scipy reference multiplies a CSR weight matrix by "
            "float64 copies of the profiles (by column chunks), mapping's former `mixture()` by whole-matrix "
            "float64 copies. All backends sum over the neighbours in the same order with one rounding per "
            "operation, so their outputs agree bit for bit (column 'same bits', from hashes of the outputs).\n\n"
            + ("C++ kernel speed-up (imaged x RNA cells x proteins, k 10): " + "; ".join(speed) + ".\n\n"
               if speed else "")
            + markdown(rows) + "\n\nCommands: " + ", ".join(f"`{c}`" for c in commands)
            + f"  \nMachine: {meta['machine']}, {meta['cpu_count']} CPUs. Times are medians; peak RSS includes the "
            "inputs (idx, w float64, mean, sd) and the outputs; extra MB = peak minus the RSS once the inputs exist "
            "(so the outputs are part of it: the C++ kernel allocates nothing else of size n x p or m x p; "
            "mixture-old's float64 copies are the rest of its extra). Load avg is the highest 1-minute load average "
            "seen around the run"
            + (": above the CPU count other jobs shared the CPUs, so these times are provisional (CPU seconds "
               "compare fairer)." if busy else "."))


if __name__ == "__main__":
    sys.exit(main())
