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
