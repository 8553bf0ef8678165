"""Outside tools (peers) as scprospatial.evaluate methods, run in their own venv through a subprocess.

`PeerMethod` follows the evaluate Method protocol: `fit(train, val)` only keeps the training cells;
`predict(test, proteins)` writes train/val/test into a fresh work folder (layout in _exchange.py), runs
`<peers venv python> run_<peer>.py WORKDIR --seed S --threads T` and reads the predictions back. So a peer
goes through the same splits, seeds and metric code as scprospatial and the baselines, in the same run,
and is never imported by the package. Peers that predict counts are put on the truth's scale with the
CLR `scprospatial prepare` applied (same axis and pseudocount, read from the cohort's provenance).
A peer that fails (missing venv, crash, timeout, bad output) raises MethodFailed with a one-line reason:
the benchmark's table shows it as failed and the run goes on.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _exchange as X  # noqa: E402  (shared with the peer scripts, which run without scprospatial)

from scprospatial import _constants as K  # noqa: E402
from scprospatial._logging import logger  # noqa: E402
from scprospatial.evaluate import MethodFailed  # noqa: E402
from scprospatial.evaluate.baselines import protein_frame  # noqa: E402
from scprospatial.io._write import write_h5ad  # noqa: E402
from scprospatial.preprocess import clr_transform  # noqa: E402

PEERS_DIR = Path(__file__).resolve().parent
PEERS_VENV = Path(os.environ.get("PEERS_VENV", PEERS_DIR.parent / ".venv-peers"))
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEER_SCRIPTS = {"totalvi": PEERS_DIR / "run_totalvi.py", "scipenn": PEERS_DIR / "run_scipenn.py"}
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def peer_versions(venv: Path = PEERS_VENV) -> dict:
    """Versions recorded by setup.sh (benchmarks/peers/versions.py), or why there are none."""
    path = Path(venv) / "peer_versions.json"
    if not path.is_file():
        return {"error": f"{path} not found (run benchmarks/peers/setup.sh)"}
    return json.loads(path.read_text())


def _exchange_file(adata: ad.AnnData, path: Path, *, with_protein: bool) -> None:
    if K.COUNTS_LAYER not in adata.layers:
        raise MethodFailed(f"no layers['{K.COUNTS_LAYER}'] (raw RNA counts) for the peer")
    out = ad.AnnData(X=sp.csr_matrix(adata.layers[K.COUNTS_LAYER], dtype=np.float32),
                     obs=pd.DataFrame(index=adata.obs_names.astype(str)),
                     var=pd.DataFrame(index=adata.var_names.astype(str)))
    out.layers[X.LOGNORM] = sp.csr_matrix(adata.X, dtype=np.float32)
    if with_protein:
        out.obsm[X.PROTEIN_CLR] = protein_frame(adata).astype(np.float32)
        if isinstance(adata.obsm.get(K.PROTEIN_RAW), pd.DataFrame):
            out.obsm[X.PROTEIN_COUNTS] = adata.obsm[K.PROTEIN_RAW].astype(np.float32)
    write_h5ad(out, path, compression=None)


def _reason(stderr: str, returncode: int) -> str:
    """The last informative line of a failed peer's stderr (the exception line, for a Python traceback)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if _EXCEPTION.match(ln)]
    line = errors[-1] if errors else lines[-1] if lines else "no message"
    return f"exit {returncode}: {line[:200]}"


class PeerMethod:
    """A peer run by `script` (a run_<peer>.py) with the peers venv's `python`; see the module docstring."""

    def __init__(self, name: str, script: str | os.PathLike | None = None, *, python: str | os.PathLike = PEERS_PYTHON,
                 seed: int = 0, threads: int = 1, timeout_s: float = 3600.0, args: Sequence[str] = ()):
        self.name = name
        self.script = Path(script) if script is not None else PEER_SCRIPTS[name]
        self.python, self.seed, self.threads, self.timeout_s = Path(python), seed, threads, timeout_s
        self.args = [str(a) for a in args]
        self.runs: list[dict] = []  # meta.json of every run (version, seconds, epochs ...)

    def fit(self, train: ad.AnnData, val: ad.AnnData) -> None:
        self._train, self._val = train, val

    def _command(self, workdir: Path) -> list[str]:
        return [str(self.python), str(self.script), str(workdir), "--seed", str(self.seed),
                "--threads", str(self.threads), *self.args]

    def _run(self, workdir: Path) -> None:
        if not self.python.is_file():
            raise MethodFailed(f"peers venv not found: {self.python} (run benchmarks/peers/setup.sh)")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update({v: str(self.threads) for v in _THREAD_VARS}, PYTHONNOUSERSITE="1")
        try:
            proc = subprocess.run(self._command(workdir), capture_output=True, text=True, timeout=self.timeout_s,
                                  env=env, cwd=workdir)
        except subprocess.TimeoutExpired:
            raise MethodFailed(f"timed out after {self.timeout_s:.0f} s") from None
        if proc.returncode != 0:
            logger.debug("%s stderr:\n%s", self.name, proc.stderr[-4000:])
            raise MethodFailed(_reason(proc.stderr, proc.returncode))

    def predict(self, adata: ad.AnnData, proteins: Sequence[str]) -> pd.DataFrame:
        # a peer sees training and test cells together: give it the genes both have (one fit can serve test
        # cohorts whose shared genes with the training cohort differ)
        genes = self._train.var_names.intersection(adata.var_names, sort=False)
        if len(genes) == 0:
            raise MethodFailed("no gene shared by the training and test cells")
        with tempfile.TemporaryDirectory(prefix=f"peer-{self.name}-") as tmp:
            work = Path(tmp)
            _exchange_file(self._train[:, genes], work / X.TRAIN, with_protein=True)
            _exchange_file(self._val[:, genes], work / X.VAL, with_protein=True)
            _exchange_file(adata[:, genes], work / X.TEST, with_protein=False)
            t0 = time.perf_counter()
            self._run(work)
            if not (work / X.META).is_file():
                raise MethodFailed(f"exited 0 without writing {X.META}")
            meta = {**json.loads((work / X.META).read_text()), "wall_s": round(time.perf_counter() - t0, 1)}
            pred = pd.read_csv(work / X.PREDICTIONS, index_col=0)
        self.runs.append(meta)
        pred.index, pred.columns = pred.index.astype(str), pred.columns.astype(str)
        missing = adata.obs_names.difference(pred.index)
        if len(missing):
            raise MethodFailed(f"no prediction for {len(missing)} of {adata.n_obs} test cells")
        pred = pred.loc[adata.obs_names]
        if meta["scale"] == X.SCALE_COUNTS:
            pred = self._to_truth_scale(pred)
        return pred[[p for p in proteins if p in pred.columns]]

    def _to_truth_scale(self, counts: pd.DataFrame) -> pd.DataFrame:
        """Per-cell CLR across every predicted protein, as prepare normalised the training panel."""
        norm = self._train.uns.get(K.UNS, {}).get(K.NORMALISATION, {}).get("protein", {})
        if norm.get("method") != "clr":
            raise MethodFailed(f"peer predicts counts but the truth is not CLR-normalised ({norm or 'unknown'})")
        values = clr_transform(np.clip(counts.to_numpy(np.float64), 0.0, None), axis=norm.get("axis", "cell"),
                               pseudocount=float(norm.get("pseudocount", 1.0)))
        return pd.DataFrame(values, index=counts.index, columns=counts.columns)
