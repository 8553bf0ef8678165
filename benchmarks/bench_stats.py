"""Spatial statistics against squidpy, on the same cells and the same graph.

Simulated cells (seeded): uniform positions at ~10 µm spacing, listed in random order; ~10 cell types in
spatial patches (each cell takes its Voronoi patch's type, or, 20% of them, a random type); 50 features that are
smooth random fields (random Fourier features, length scales 20-200 µm) plus a cell-type effect plus noise. One
kNN graph (our `spatial_neighbors`, k neighbours, default 10 as `spatial-stats` builds) is built once and given
to both libraries. Timed, side by side:

  enrichment  ours: `nhood_enrichment(n_perms, seed)`          squidpy: `gr.nhood_enrichment(n_perms, seed)`
  moran       ours: `spatial_autocorr` (obsm['protein'])      squidpy: `gr.spatial_autocorr(mode='moran',
              (the library functions `spatial-stats` calls)             n_perms=None)` on X = the same 50 features

Each size runs in one freshly started worker process that builds the data and graph once, then warms both
libraries up (numba compiles squidpy's kernels; loky starts squidpy's worker pool; untimed), then measures
--repeats rounds in-process under the same conditions for both: ours with `threads(T)` and with one thread,
squidpy with its default n_jobs=1 (NUMBA_NUM_THREADS=T), their order rotating from round to round so that load
from other jobs on the machine hits all alike. Round r uses seed r for both, so squidpy's own rounds give its
permutation noise. (squidpy's nhood_enrichment with n_jobs > 1 fails once the graph's arrays pass joblib's 1 MB
memmapping threshold, here from 10^5 cells: loky hands the workers read-only arrays that its numba signature
refuses; --squidpy-jobs sets it anyway.)

Agreement: edge counts equal; Moran's I (and its variance, p-value) max |ours - squidpy|; enrichment z: the max
and median |z_ours - z_squidpy| of equal rounds beside the same for squidpy's rounds 0 and 1 (two seeds of
squidpy itself, i.e. permutation noise), and the correlation of the z-scores.

    nice -n 5 .venv/bin/python benchmarks/bench_stats.py --sizes 1e4,1e5,1e6 --repeats 3,3,2 --readme

Writes benchmarks/results/stats.json (or --out) and the bench_stats section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- bench_stats:start -->", "<!-- bench_stats:end -->"
STATS = ("enrichment", "moran")
KEY = "cell_type"


def simulate(n: int, n_types: int = 10, n_features: int = 50, seed: int = 0):
    """(coordinates n x 2 in µm, cell-type codes n, features n x n_features float64), cells in random order."""
    import numpy as np
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    side = 10.0 * np.sqrt(n)                        # ~10 µm between neighbouring cells
    xy = rng.random((n, 2)) * side
    freq = rng.dirichlet(np.full(n_types, 2.0))     # unequal type frequencies
    centres = rng.random((max(n_types, n // 200), 2)) * side
    patch_type = rng.choice(n_types, len(centres), p=freq)
    codes = patch_type[cKDTree(centres).query(xy)[1]]
    mixed = rng.random(n) < 0.2
    codes[mixed] = rng.choice(n_types, int(mixed.sum()), p=freq)
    scale = np.exp(rng.uniform(np.log(20), np.log(200), n_features))
    features = np.empty((n, n_features))
    type_effect = rng.normal(0, 0.5, (n_types, n_features))
    for f in range(n_features):
        w = rng.normal(0, 1 / scale[f], (8, 2))
        b = rng.uniform(0, 2 * np.pi, 8)
        features[:, f] = np.cos(xy @ w.T + b).sum(1) / 2 + type_effect[codes, f] + rng.normal(0, 1, n)
    return xy, codes, features


def make_adatas(n: int, k: int, n_types: int, n_features: int, threads: int, seed: int = 0):
    """(ours, squidpy's): AnnData pairs with the same cells, labels and graph; features in obsm['protein'] for
    ours and as X for squidpy."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from scprospatial import _constants as K
    from scprospatial.spatial import spatial_neighbors

    xy, codes, features = simulate(n, n_types, n_features, seed)
    names = [f"f{i:02d}" for i in range(n_features)]
    obs = pd.DataFrame({KEY: pd.Categorical.from_codes(codes, [f"type{t}" for t in range(n_types)])},
                       index=[str(i) for i in range(n)])
    ours = ad.AnnData(obs=obs.copy(), obsm={K.SPATIAL: xy})
    spatial_neighbors(ours, n_neighs=k, threads=threads)
    ours.obsm[K.PROTEIN] = pd.DataFrame(features, index=ours.obs_names, columns=names)
    theirs = ad.AnnData(X=features, obs=obs.copy(), obsm={"spatial": xy})
    theirs.var_names = names
    for key in (K.SPATIAL_CONNECTIVITIES, K.SPATIAL_DISTANCES):
        theirs.obsp[key] = ours.obsp[key].copy()
    return ours, theirs, np.asarray(names)


def run_ours(stat: str, adata, *, n_perms: int, seed: int, threads: int, jobs: int = 1):
    from scprospatial._settings import threads as thread_scope
    from scprospatial.spatial import nhood_enrichment, spatial_autocorr

    with thread_scope(threads):
        if stat == "enrichment":
            nhood_enrichment(adata, cluster_key=KEY, n_perms=n_perms, seed=seed)
            res = adata.uns[f"{KEY}_nhood_enrichment"]
            return res["zscore"], res["count"]
        spatial_autocorr(adata)
        return adata.uns["moranI"]


def run_squidpy(stat: str, adata, *, n_perms: int, seed: int, threads: int, jobs: int = 1):
    import squidpy as sq

    if stat == "enrichment":
        return tuple(sq.gr.nhood_enrichment(adata, cluster_key=KEY, n_perms=n_perms, seed=seed, n_jobs=jobs,
                                            copy=True, show_progress_bar=False))
    return sq.gr.spatial_autocorr(adata, mode="moran", genes=list(adata.var_names), n_perms=None, n_jobs=jobs,
                                  copy=True, show_progress_bar=False)


def worker(args) -> None:
    """Every statistic of one size, both libraries, in this process: prints one JSON line."""
    import numpy as np

    t0 = time.perf_counter()
    ours, theirs, names = make_adatas(args.n, args.k, args.types, args.features, args.threads)
    setup_s = time.perf_counter() - t0
    libs = {"ours": (run_ours, ours, args.threads), "ours-1thread": (run_ours, ours, 1),
            "squidpy": (run_squidpy, theirs, args.threads)}
    for stat in STATS:  # warm-up (numba JIT, loky pool, imports), untimed
        run_ours(stat, ours.copy(), n_perms=8, seed=99, threads=args.threads)
        run_squidpy(stat, theirs, n_perms=8, seed=99, threads=args.threads, jobs=args.squidpy_jobs)
    times = {(lib, stat): [] for lib in libs for stat in STATS}
    out = {(lib, stat): [] for lib in libs for stat in STATS}
    for r in range(args.repeats):
        for stat in STATS:
            names_ = list(libs)
            for lib in names_[r % 3:] + names_[:r % 3]:
                fn, data, threads = libs[lib]
                t = time.perf_counter()
                res = fn(stat, data, n_perms=args.perms, seed=r, threads=threads, jobs=args.squidpy_jobs)
                times[lib, stat].append(time.perf_counter() - t)
                out[lib, stat].append(res)
                print(f"    n={args.n} round {r} {stat} {lib}: {times[lib, stat][-1]:.2f} s", file=sys.stderr,
                      flush=True)
    # agreement
    (z_o, c_o), (z_s, c_s) = out["ours", "enrichment"][0], out["squidpy", "enrichment"][0]
    ok = np.isfinite(z_o) & np.isfinite(z_s)
    dz = np.abs(z_o - z_s)[ok]
    # a z-score from N permutations is off by about sqrt((1 + z^2 / 2) / N) (the error of the permutation mean
    # and SD); the difference of two independent ones, by sqrt(2) times that
    se = np.sqrt(2 * (1 + z_s[ok] ** 2 / 2) / args.perms)
    agree = {"counts_equal": bool(np.array_equal(c_o, c_s)), "z_max_abs_diff": float(dz.max()),
             "z_max_diff_in_se": float((dz / se).max()),
             "z_median_abs_diff": float(np.median(dz)), "z_corr": float(np.corrcoef(z_o[ok], z_s[ok])[0, 1]),
             "z_max_abs": float(np.abs(z_s[ok]).max())}
    if args.repeats > 1:
        z_s1 = out["squidpy", "enrichment"][1][0]
        ok1 = ok & np.isfinite(z_s1)
        noise = np.abs(z_s - z_s1)[ok1]
        se1 = np.sqrt(2 * (1 + z_s[ok1] ** 2 / 2) / args.perms)
        agree.update(z_noise_max_abs_diff=float(noise.max()), z_noise_median_abs_diff=float(np.median(noise)),
                     z_noise_max_diff_in_se=float((noise / se1).max()),
                     z_noise_corr=float(np.corrcoef(z_s[ok1], z_s1[ok1])[0, 1]))
    m_o, m_s = out["ours", "moran"][0], out["squidpy", "moran"][0].loc[names]
    m_o = m_o.loc[names]
    for col, name in (("I", "moran_I"), ("var_norm", "moran_var"), ("pval_norm", "moran_pval")):
        agree[f"{name}_max_abs_diff"] = float(np.abs(m_o[col].to_numpy() - m_s[col].to_numpy()).max())
    agree["moran_I_range"] = [float(m_s["I"].min()), float(m_s["I"].max())]
    graph = ours.obsp["spatial_connectivities"]
    print(json.dumps({"setup_s": setup_s, "edges": int(graph.nnz),
                      "times_s": {f"{lib}/{stat}": t for (lib, stat), t in times.items()}, "agreement": agree}))


def markdown(rows: list[dict]) -> str:
    lines = ["| cells | edges | statistic | ours (s) | ours, 1 thread (s) | squidpy (s) | squidpy / ours | "
             "runs | agreement |", "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for row in sorted(rows, key=lambda r: r["n"]):
        a = row["agreement"]
        for stat in STATS:
            o, s = row["times_s"][f"ours/{stat}"], row["times_s"][f"squidpy/{stat}"]
            mo, ms = statistics.median(o), statistics.median(s)
            m1 = statistics.median(row["times_s"][f"ours-1thread/{stat}"])
            if stat == "moran":
                agree = f"max \\|ΔI\\| {a['moran_I_max_abs_diff']:.1e}, \\|Δvar\\| {a['moran_var_max_abs_diff']:.1e}"
            else:
                agree = (f"counts {'equal' if a['counts_equal'] else 'DIFFER'}; \\|Δz\\| max {a['z_max_abs_diff']:.2f} "
                         f"({a['z_max_diff_in_se']:.1f} SE) median {a['z_median_abs_diff']:.2f}, r = {a['z_corr']:.4f}")
                if "z_noise_max_abs_diff" in a:
                    agree += (f" (squidpy seed 0 vs 1: max {a['z_noise_max_abs_diff']:.2f} "
                              f"({a['z_noise_max_diff_in_se']:.1f} SE) median {a['z_noise_median_abs_diff']:.2f}, "
                              f"r = {a['z_noise_corr']:.4f}; \\|z\\| up to {a['z_max_abs']:.0f})")
            lines.append(f"| {row['n']:,} | {row['edges']:,} | {stat} | {mo:.3g} | {m1:.3g} | {ms:.3g} | "
                         f"{ms / mo:.1f}× | {len(o)} | {agree} |")
    return "\n".join(lines)


def _load_note(rows: list[dict]) -> str:
    if not rows or "load_avg" not in rows[0]:
        return ""
    loads = ", ".join(f"{r['load_avg'][0]:.1f}-{r['load_avg'][1]:.1f}" for r in sorted(rows, key=lambda r: r["n"]))
    return f"Load average before-after each size: {loads} (a shared machine: figures are provisional)."


def section(rows: list[dict], meta: dict) -> str:
    r0 = rows[0] if rows else {}
    return "\n".join([  # put_section adds the START/END markers
        "## Spatial statistics against squidpy (`bench_stats.py`)",
        "",
        f"Simulated cells (patchy cell types, {r0.get('types', 10)} types; {r0.get('features', 50)} spatially "
        f"autocorrelated features), one {r0.get('k', 10)}-nearest-neighbour graph given to both. Neighbourhood "
        f"enrichment with {r0.get('perms', 1000)} permutations; Moran's I with the analytic variance (squidpy "
        "`n_perms=None`). Ours with `threads` threads and with one; squidpy with its default n_jobs=1 (n_jobs=2 fails "
        "from 10^5 cells: joblib memmaps the graph read-only and squidpy's numba kernel refuses read-only arrays) "
        "and NUMBA_NUM_THREADS = `threads`; after an untimed warm-up (numba JIT); medians of the runs, measured in "
        "one fresh worker process per size with ours and squidpy's runs in rotating order. Enrichment z-scores come "
        "from different random permutations in the two libraries, so they agree to within permutation noise, "
        "shown beside them as squidpy against itself with another seed; SE: the standard error of the difference "
        "of two z-scores from independent permutations, sqrt(2 (1 + z²/2) / n_perms).",
        "",
        f"squidpy {r0.get('squidpy', '?')}, numba {r0.get('numba', '?')}, {r0.get('threads', '?')} threads; "
        f"machine: {meta.get('machine', '?')}, {meta.get('cpu_count', '?')} CPUs. "
        + _load_note(rows),
        "",
        markdown(rows),
        "",
        f"    {meta.get('command', '')}",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e4,1e5,1e6", help="cell counts, comma-separated (run in this order)")
    p.add_argument("--repeats", default="3", help="timed rounds per size: one number, or one per size")
    p.add_argument("--perms", type=int, default=1000)
    p.add_argument("--types", type=int, default=10)
    p.add_argument("--features", type=int, default=50)
    p.add_argument("--k", type=int, default=10, help="neighbours per cell (spatial-stats' default graph)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--squidpy-jobs", type=int, default=1, help="squidpy's n_jobs (its default 1: see above)")
    p.add_argument("--out", default=str(RESULTS / "stats.json"))
    p.add_argument("--readme", action="store_true", help="rewrite the bench_stats section of benchmarks/README.md")
    p.add_argument("--readme-only", action="store_true", help="rewrite the section from --out without measuring")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.repeats = int(args.repeats)
        worker(args)
        return 0
    command = "nice -n 5 .venv/bin/python benchmarks/bench_stats.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.readme_only:
        from _readme import rebuild_section

        rebuild_section(out, section, START, END)
        return 0
    import numba
    import squidpy

    sizes = [int(float(s)) for s in args.sizes.split(",")]
    repeats = [int(r) for r in args.repeats.split(",")]
    repeats = repeats * len(sizes) if len(repeats) == 1 else repeats
    if len(repeats) != len(sizes):
        p.error(f"--repeats has {len(repeats)} values for {len(sizes)} sizes")
    env = {**os.environ, "NUMBA_NUM_THREADS": str(args.threads)}
    rows = []
    for n, reps in zip(sizes, repeats):
        load0 = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "--worker", f"--n={n}", f"--repeats={reps}"] + [
            f"--{a.replace('_', '-')}={getattr(args, a)}"
            for a in ("perms", "types", "features", "k", "threads", "squidpy_jobs")]
        proc = subprocess.run(cmd, capture_output=False, stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            print(f"  n={n}: worker failed (exit {proc.returncode}); stopping", file=sys.stderr)
            break
        row = {"n": n, "perms": args.perms, "types": args.types, "features": args.features, "k": args.k,
               "threads": args.threads, "squidpy_jobs": args.squidpy_jobs, "squidpy": squidpy.__version__,
               "numba": numba.__version__,
               **json.loads(proc.stdout.strip().splitlines()[-1]), "load_avg": [load0, os.getloadavg()[0]]}
        rows.append(row)
        print(markdown([row]), file=sys.stderr)

    from _readme import publish

    publish(out, rows, lambda r: (r["n"], r["perms"], r["k"], r["threads"]), command, table=markdown,
            section=section, readme=args.readme, start=START, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
