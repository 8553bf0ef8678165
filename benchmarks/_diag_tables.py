"""Tables of diag_mapping.py's results (results/mapping_diagnosis.json) for the mapping section of the README."""
from __future__ import annotations

import numpy as np

COMPONENTS = ("link", "sim", "joint", "weights", "readout", "zscore", "input")


def _median(rows: list[dict], key: str, keep=lambda r: True) -> float:
    vals = [r[key] for r in rows if keep(r) and key in r]
    return float(np.median(vals)) if vals else float("nan")


def paired(diag: dict, key: str, ref: str, keep=lambda r: True) -> tuple[float, float, int, int]:
    """Mean and standard error over (panel, seed) of the difference of validation medians key - ref, the number of
    (panel, seed) pairs and how many of them are positive."""
    d = [_median(run["rows"], key, keep) - _median(run["rows"], ref, keep) for run in diag["runs"]]
    d = [x for x in d if np.isfinite(x)]
    if not d:
        return float("nan"), float("nan"), 0, 0
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(np.mean(d)), se, len(d), int(sum(x > 0 for x in d))


def _changed(settings: dict, base: dict) -> str:
    return ", ".join(f"{c}={settings[c]}" for c in COMPONENTS if settings.get(c) != base.get(c)) or "–"


def diagnosis_section(diag: dict) -> list[str]:
    panels = list(dict.fromkeys(run["panel"] for run in diag["runs"]))
    seeds = sorted({run["seed"] for run in diag["runs"]})
    keys = [*diag["variants"], *(k for k in diag["runs"][0]["rows"][0] if k.endswith("panel regression"))]
    n_markers = {p: len(next(run["rows"] for run in diag["runs"] if run["panel"] == p)) for p in panels}
    lines = ["### Issue 18 diagnosis: one component at a time (validation markers)", "",
             f"`{diag['command']}` ({diag.get('date', '')}). Models of {len(seeds)} training seeds; validation markers "
             "with a coding gene in the RNA (" + ", ".join(f"{p} {n}" for p, n in n_markers.items()) + "); k = "
             f"{diag['k']}. Each row changes the named components of the no-model baseline (`link=rna, sim=pearson, "
             "joint=0, weights=uniform, readout=rna, zscore=both`) or of the mapping `map` used before this work "
             "(`old default`: `link=pred, sim=cosz, joint=0.4, weights=softmax, readout=pred`). Figures: median "
             "Pearson over the validation markers, mean over seeds; Δ: the difference to the baseline per (panel, "
             "seed), mean ± standard error, and on how many (panel, seed) pairs it is above; supported: coding gene "
             "detected in ≥ 10% of the scRNA-seq cells. `map`'s default after this work is the old default at joint "
             "weight 0 (**new default**). Panel regression (issue 15 item 6): per hidden marker a ridge from the "
             "predicted panel to the predicted marker fitted on the scRNA-seq cells, applied to the measured panel; "
             "`X + panel regression`: the two imputations standardised and averaged.", "",
             "| variant | " + " | ".join(panels) + " | supported | unsupported | Δ vs baseline | above |",
             "|---|" + "---|" * (len(panels) + 4)]
    for key in keys:
        per = [np.mean([_median(run["rows"], key) for run in diag["runs"] if run["panel"] == p]) for p in panels]
        sup = np.mean([_median(run["rows"], key, lambda r: r.get("supported", True)) for run in diag["runs"]])
        uns = np.mean([_median(run["rows"], key, lambda r: not r.get("supported", True)) for run in diag["runs"]])
        mean, se, n, above = paired(diag, key, "baseline")
        name = key if key in ("baseline", "old default") or key not in diag["variants"] else \
            f"{key.split(',')[0]}: {_changed(diag['variants'][key], diag['variants'][key.split(',')[0]])}"
        name = name.replace("old default, joint=0.0", "old default at joint=0")
        if key == "old default, joint=0.0":
            name = "**new default** (old default at joint=0)"
        delta = "–" if key == "baseline" else f"{mean:+.3f} ± {se:.3f}"
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in per) + f" | {sup:.3f} | {uns:.3f} | {delta} | "
                     + ("–" if key == "baseline" else f"{above}/{n}") + " |")
    for panel, rows in diag.get("ensemble", {}).items():
        if rows:
            single = [np.median([r["single"][i] for r in rows]) for i in range(len(rows[0]["single"]))]
            lines.append("")
            lines.append(f"Ensemble over training seeds ({panel}, new default `old default at joint=0`, validation "
                         f"markers): median Pearson of the imputation averaged over the {len(single)} models "
                         f"{np.median([r['ensemble'] for r in rows]):.3f}; each model alone "
                         + ", ".join(f"{v:.3f}" for v in single) + ".")
    return lines + ["", "![diagnosis](results/mapping_diagnosis.png)", ""]


def diagnosis_figure(diag: dict, path) -> None:
    """Left: each variant's median Pearson minus the baseline's (validation markers), mean ± standard error over
    (panel, seed). Right: per validation marker and seed, the no-model baseline against the new default
    (`old default, joint=0.0`: the predicted panel alone, as `map` now runs) and the old default."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in [*diag["variants"], *(k for k in diag["runs"][0]["rows"][0] if k.endswith("panel regression"))]
            if k != "baseline"]
    stats = [paired(diag, k, "baseline")[:2] for k in keys]
    order = np.argsort([m for m, _ in stats])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 0.28 * len(keys) + 2), gridspec_kw={"width_ratios": [1.4, 1]})
    y = np.arange(len(keys))
    ax.barh(y, [stats[i][0] for i in order], xerr=[stats[i][1] for i in order], color=[
        "tab:green" if keys[i] == "old default, joint=0.0" else "tab:grey" for i in order])
    ax.set_yticks(y, [keys[i] for i in order], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("median Pearson minus the no-model baseline (validation markers; mean ± SE over panel × seed)")
    for key, colour in (("old default, joint=0.0", "tab:green"), ("old default", "tab:orange")):
        base = [r["baseline"] for run in diag["runs"] for r in run["rows"]]
        bx.scatter(base, [r[key] for run in diag["runs"] for r in run["rows"]], s=10, alpha=0.6, color=colour,
                   label="new default (predicted panel, a = 0)" if key != "old default" else "old default (a = 0.4)")
    bx.plot([-0.5, 1], [-0.5, 1], color="k", lw=0.8)
    bx.set_xlabel("no-model baseline, Pearson per marker and seed")
    bx.set_ylabel("mapping, Pearson")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
