"""Writing and reading imputed proteomes: the documented layout against one proposed change (issue 16, item 4).

`impute --all-proteins` writes obsm['protein_predicted'] and obsm['protein_predicted_sd'] as DataFrames (cells x
proteins, named columns). anndata stores a DataFrame column by column: one HDF5 dataset, its attributes and
anndata's dispatch per protein, so a proteome of ~3,000 proteins is ~6,000 datasets. The proposed layout keeps the
same keys but stores float32 arrays, the protein names in uns['protein_predicted']['proteins'] (the table that
already lists every predicted protein), i.e. one dataset per key. The package writes with gzip (`io.write_h5ad`);
each layout is also written uncompressed, a change that needs no key change. The values are random normal floats
(float32 mantissas compress little whatever the data). All layouts are written and read back through
anndata (`write_h5ad` / `read_h5ad`), each run in a fresh subprocess (interleaved, so machine load hits both
alike); medians of --repeats runs. Nothing here changes the package: it measures what the change would gain.

    .venv/bin/python benchmarks/bench_write.py --shapes 1e4x300,1e4x3000,1e5x300 --repeats 3 --readme

With --file H5AD: an existing AnnData (e.g. bench_scale's prepared 10^6-cell query, which `map` writes back as
its scRNA-seq output) is read once and written with each compression of the package's choice (h5py gzip at
level 4, its default; gzip at level 1, what `io.write_h5ad` uses; lzf; none), then read back.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _readme import merge_results, put_section, rebuild_section  # noqa: E402

RESULTS = HERE / "results" / "write.json"
START, END = "<!-- bench_write:start -->", "<!-- bench_write:end -->"
LAYOUTS = ("dataframe+gzip", "dataframe", "array+gzip", "array")  # "+gzip": compressed, as the package writes


def worker(layout: str, n: int, p: int, path: Path) -> dict:
    """Build an AnnData of n cells with the two obsm entries of `layout`, write it, read it back; seconds."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    layout, _, compression = layout.partition("+")
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((n, p), dtype=np.float32)
    sd = np.abs(rng.standard_normal((n, p), dtype=np.float32))
    names = [f"protein_{j}" for j in range(p)]
    adata = ad.AnnData(np.zeros((n, 1), np.float32), obs=pd.DataFrame(index=[f"cell_{i}" for i in range(n)]))
    if layout == "dataframe":
        adata.obsm["protein_predicted"] = pd.DataFrame(mean, index=adata.obs_names, columns=names)
        adata.obsm["protein_predicted_sd"] = pd.DataFrame(sd, index=adata.obs_names, columns=names)
    else:
        adata.obsm["protein_predicted"], adata.obsm["protein_predicted_sd"] = mean, sd
        adata.uns["protein_predicted"] = {"proteins": pd.DataFrame(index=pd.Index(names, name="protein"))}
    from scprospatial.io._write import GZIP_LEVEL  # imported before the clock starts

    t0 = time.perf_counter()
    adata.write_h5ad(path, compression=compression or None, compression_opts=GZIP_LEVEL if compression else None)
    t1 = time.perf_counter()
    back = ad.read_h5ad(path)
    if layout == "array":  # what a user does to get named columns back
        cols = back.uns["protein_predicted"]["proteins"].index
        pd.DataFrame(back.obsm["protein_predicted"], index=back.obs_names, columns=cols)
    t2 = time.perf_counter()
    return {"write_s": t1 - t0, "read_s": t2 - t1, "mb": path.stat().st_size / 1e6}


FILE_CASES = (("gzip-4", "gzip", 4), ("gzip-1", "gzip", 1), ("lzf", "lzf", None), ("none", None, None))


def file_cases(src: Path, repeats: int, tmp: str) -> list[dict]:
    """Write and read back an existing AnnData with each compression of FILE_CASES, in this process."""
    import anndata as ad

    adata = ad.read_h5ad(src)
    rows = []
    for name, compression, level in FILE_CASES:
        got = []
        for _ in range(repeats):
            path = Path(tmp) / f"{name}.h5ad"
            t0 = time.perf_counter()
            adata.write_h5ad(path, compression=compression, compression_opts=level)
            t1 = time.perf_counter()
            ad.read_h5ad(path)
            got.append({"write_s": t1 - t0, "read_s": time.perf_counter() - t1, "mb": path.stat().st_size / 1e6})
            path.unlink()
            print(f"{src.name} {name}: {got[-1]}", file=sys.stderr, flush=True)
        rows.append({"file": src.name, "n": adata.n_obs, "p": adata.n_vars, "layout": name, "runs": len(got),
                     **{m: statistics.median(g[m] for g in got) for m in ("write_s", "read_s", "mb")}})
    return rows


def parse_shape(text: str) -> tuple[int, int]:
    n, p = text.lower().split("x")
    return int(float(n)), int(float(p))


def readme_body(rows: list[dict], meta: dict) -> str:
    lines = ["## Writing imputed proteomes (`bench_write.py`)", "",
             "obsm['protein_predicted'] and its SD as DataFrames (the documented layout: one HDF5 dataset per "
             "protein) against float32 arrays with the names in uns['protein_predicted']['proteins'] (a proposed "
             "key change, not made). Write and read back through anndata, fresh process per run, interleaved; "
             "medians of the runs. `+gzip`: compressed as the package writes (`io.write_h5ad`, gzip level 1), else "
             "uncompressed. Rows named after a file: that AnnData written whole with each compression (`--file`). "
             + meta.get("note", ""), "",
             "```", *dict.fromkeys(r.get("command", meta["command"]) for r in rows), "```", "",
             "| cells x proteins | layout | write (s) | read (s) | file (MB) | runs |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.get("file") or "", r["n"], r["p"], r["layout"])):
        what = f"{r['file']}: " if r.get("file") else ""
        lines.append(f"| {what}{r['n']:,} x {r['p']:,} | {r['layout']} | {r['write_s']:.2f} | {r['read_s']:.2f} | "
                     f"{r['mb']:.0f} | {r['runs']} |")
    by = {(r["n"], r["p"], r["layout"]): r for r in rows if not r.get("file")}
    base = "dataframe+gzip"  # what the package writes today
    gains = []
    for n, p in sorted({(n, p) for n, p, _ in by}):
        if (n, p, base) not in by:
            continue
        ref = by[n, p, base]
        gains.append(f"{n:,} x {p:,}: " + ", ".join(
            f"{lay} write {ref['write_s'] / by[n, p, lay]['write_s']:.1f}x, "
            f"read {ref['read_s'] / by[n, p, lay]['read_s']:.1f}x"
            for lay in LAYOUTS if lay != base and (n, p, lay) in by))
    if gains:
        lines += ["", f"Faster than `{base}` (the package today) by: " + "; ".join(gains) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="1e4x300,1e4x3000,1e5x300", help="comma-separated CELLSxPROTEINS")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="", help="a remark printed under the table (e.g. machine load)")
    ap.add_argument("--readme", action="store_true", help="rewrite the bench_write section of benchmarks/README.md")
    ap.add_argument("--readme-only", action="store_true", help="rewrite the section from the results file")
    ap.add_argument("--file", type=Path, default=None, help="time the compressions on this h5ad instead")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        layout, n, p, path = args.worker
        print(json.dumps(worker(layout, int(n), int(p), Path(path))))
        return 0
    if args.readme_only:
        rebuild_section(RESULTS, readme_body, START, END)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(dir=args.file.parent if args.file else None) as tmp:
        if args.file:
            rows = file_cases(args.file, args.repeats, tmp)
        for shape in [] if args.file else args.shapes.split(","):
            n, p = parse_shape(shape)
            runs: dict[str, list[dict]] = {layout: [] for layout in LAYOUTS}
            for rep in range(args.repeats):
                for layout in LAYOUTS:
                    path = Path(tmp) / f"{layout}_{rep}.h5ad"
                    out = subprocess.run([sys.executable, __file__, "--worker", layout, str(n), str(p), str(path)],
                                         capture_output=True, text=True, check=True)
                    runs[layout].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    path.unlink()
                    print(f"{n} x {p} {layout} run {rep + 1}: {runs[layout][-1]}", file=sys.stderr, flush=True)
            for layout, got in runs.items():
                rows.append({"n": n, "p": p, "layout": layout, "runs": len(got),
                             **{m: statistics.median(g[m] for g in got) for m in ("write_s", "read_s", "mb")}})
    command = "python benchmarks/bench_write.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for r in rows:
        r["command"] = command
    merged, meta = merge_results(RESULTS, rows, lambda r: (r.get("file"), r["n"], r["p"], r["layout"]), command)
    meta["note"] = args.note
    if args.readme:
        put_section(readme_body(merged, meta), START, END)
    print(readme_body(merged, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
