"""The HTML report: sections appear only for the outputs that exist."""
from __future__ import annotations

import pandas as pd

from scprospatial.report.html import build_report


def test_report_shows_evaluation_tables_when_evaluate_ran(tmp_path):
    out = tmp_path / "results"
    (out / "evaluate").mkdir(parents=True)
    html = build_report(out, out / "report" / "report.html").read_text()
    assert "Evaluation on held-out cells" not in html
    pd.DataFrame({"split": ["random"] * 2, "setting": ["random"] * 2, "method": ["scprospatial", "ridge_hvg"],
                  "n_repeats": [5, 5], "pearson_mean": [0.8, 0.78], "pearson_sd": [0.01, 0.02]}).to_csv(
        out / "evaluate" / "summary.csv", index=False)
    html = build_report(out, out / "report" / "report.html").read_text()
    assert "Evaluation on held-out cells" in html and "ridge_hvg" in html and "0.78" in html


def test_report_shows_support_classes_of_imputed_proteins(tmp_path):
    import anndata as ad
    import numpy as np

    from scprospatial import _constants as K

    out = tmp_path / "results"
    (out / "imputed").mkdir(parents=True)
    names = ["CD3", "CD8", "CD20"]
    a = ad.AnnData(np.zeros((4, 1), np.float32))
    a.obsm[K.PROTEIN_PREDICTED] = pd.DataFrame(np.ones((4, 3)), index=a.obs_names, columns=names)
    table = pd.DataFrame({K.SUPPORT: [K.SUPPORT_MEASURED, K.SUPPORT_DETECTED, K.SUPPORT_UNDETECTED],
                          K.DETECTED_FRACTION: [0.9, 0.4, 0.02], K.EXPECTED_PEARSON: [0.81, 0.52, 0.11],
                          K.EXPECTED_PEARSON_NEW_COHORT: [0.6, 0.3, 0.05]}, index=pd.Index(names, name="protein"))
    a.uns[K.PROTEIN_PREDICTED] = {"measured_in_training": ["CD3"], K.PROTEIN_TABLE: table,
                                  K.RELIABILITY: {"detection_rule": "count > 0 in at least 10% of the input cells",
                                                  "dropped_by_min_support": [],
                                                  "calibration": {"note": "intervals are NOT calibrated here"}}}
    a.write_h5ad(out / "imputed" / "q.imputed.h5ad")
    html = build_report(out, out / "report" / "report.html").read_text()
    assert "Support of each predicted protein" in html and K.SUPPORT_UNDETECTED in html
    assert "0.520" in html and "CD20: gene_link_undetected" in html and "NOT calibrated" in html
