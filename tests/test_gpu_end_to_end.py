"""End to end on a GPU: simulate, train a few epochs, impute, build the graph and map with `--device cuda`, against the
same commands with `--device cpu`. Skipped, with the reason, without a usable GPU (tests/gpu/device_checks.sh runs it
on a GPU machine; set SCPROSPATIAL_GPU_REPORT=<file.json> to keep every measured difference).

Tolerances, and why:
- kNN graph: bit for bit (the CUDA kernel claims it); uns records 'cuda' against 'cpp'.
- impute with one model: max |difference| <= 1e-3 on the CLR scale (float32 matrix products summed in another order).
- map without the panel adaptation, one model: >= 99% of imaged cells within 1e-3 (cells whose top-k has a near tie
  may pick another neighbour after 1e-6 changes in the embedding); uns records 'cuda' for search and gather.
- map with the adaptation (the default), and training: dropout draws from torch's CUDA generator on the GPU and from
  the CPU generator on the CPU, so a GPU run differs from the CPU run as another seed does. Map: the GPU-vs-CPU
  difference must stay within twice the CPU's seed-0-vs-seed-1 difference, plus 1e-3 for rounding. Training: the
  model trained on the GPU must be as accurate (imputation vs the simulated truth, final validation Pearson) as the
  worse of the two CPU seeds, less 0.05.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scprospatial import _constants as K
from scprospatial import _ext

from .conftest import run_cli

reason = _ext.cuda_unavailable_reason()
if reason is None:
    import torch

    if not torch.cuda.is_available():
        reason = "the core sees a CUDA device but torch does not"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(reason is not None, reason=f"no usable GPU: {reason}")]

EPOCHS = "3"     # per training stage
THREADS = "4"
REPORT: dict = {"seconds": {}}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    sim = d / "sim"

    def step(name, *args):
        t0 = time.perf_counter()
        run_cli(*args, "--threads", THREADS, check=True, timeout=900)
        REPORT["seconds"][name] = round(time.perf_counter() - t0, 2)

    step("simulate", "simulate", "--outdir", sim, "--n-cells", "1000", "--n-genes", "800", "--seed", "0")
    for tag, device, seed in (("cpu", "cpu", 0), ("cpu_seed1", "cpu", 1), ("cuda", "cuda", 0)):
        step(f"train_{tag}", "train", sim / "citeseq.h5ad", "--outdir", d / f"model_{tag}", "--epochs", EPOCHS,
             "--seed", str(seed), "--device", device)
    model = d / "model_cpu" / "model.pt"
    for tag, device, model_tag in (("cpu", "cpu", "cpu"), ("cuda", "cuda", "cpu"), ("cpu_seed1", "cpu", "cpu_seed1"),
                                   ("cudarun", "cuda", "cuda")):
        step(f"impute_{tag}", "impute", sim / "query_rna.h5ad", "--model", d / f"model_{model_tag}" / "model.pt",
             "--out", d / f"imputed_{tag}.h5ad", "--device", device)
    for device in ("cpu", "cuda"):
        step(f"graph_{device}", "spatial-graph", sim / "spatial.csv", "--out", d / f"graph_{device}.h5ad",
             "--device", device)
    for tag, device, seed in (("cpu", "cpu", 0), ("cpu_seed1", "cpu", 1), ("cuda", "cuda", 0)):
        step(f"map_{tag}", "map", "--model", model, "--rna", sim / "query_rna.h5ad", "--spatial",
             d / f"graph_{device}.h5ad", "--out", d / f"mapped_{tag}.h5ad", "--device", device, "--seed", str(seed))
    yield d
    out = os.environ.get("SCPROSPATIAL_GPU_REPORT")
    if out:
        REPORT["device"] = torch.cuda.get_device_name(0)
        Path(out).write_text(json.dumps(REPORT, indent=2, default=float) + "\n")


def read(path):
    import anndata as ad

    return ad.read_h5ad(path)


def frame(adata, key):
    return adata.obsm[key].to_numpy(np.float64)


def test_knn_graph_on_cuda_is_the_cpu_graph_bit_for_bit(e2e):
    cpu, gpu = read(e2e / "graph_cpu.h5ad"), read(e2e / "graph_cuda.h5ad")
    assert cpu.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "cpp"
    assert gpu.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "cuda"
    for key in (K.SPATIAL_DISTANCES, K.SPATIAL_CONNECTIVITIES):
        a, b = gpu.obsp[key], cpu.obsp[key]
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    REPORT["graph"] = {"edges": int(cpu.obsp[K.SPATIAL_DISTANCES].nnz), "bit_identical": True}


def test_impute_with_one_model_on_cuda_equals_cpu(e2e):
    cpu, gpu = read(e2e / "imputed_cpu.h5ad"), read(e2e / "imputed_cuda.h5ad")
    diffs = {}
    for key in (K.PROTEIN_PREDICTED, K.PROTEIN_PREDICTED + K.SD_SUFFIX):
        assert list(gpu.obsm[key].columns) == list(cpu.obsm[key].columns)
        diffs[key] = float(np.abs(frame(gpu, key) - frame(cpu, key)).max())
    REPORT["impute_same_model_max_abs_diff"] = diffs
    assert max(diffs.values()) <= 1e-3, diffs


def _spearman_to_truth(imputed, truth: pd.DataFrame) -> float:
    from scipy.stats import spearmanr

    pred = imputed.obsm[K.PROTEIN_PREDICTED]
    common = [p for p in pred.columns if p in truth.columns]
    t = truth.loc[imputed.obs_names, common]
    rhos = [spearmanr(pred[p].to_numpy(), t[p].to_numpy()).statistic for p in common]
    return float(np.nanmean(rhos))


def test_whole_run_on_cuda_is_as_accurate_as_on_cpu(e2e):
    truth = pd.read_csv(e2e / "sim" / "truth" / "query_protein.csv", index_col=0)
    acc = {tag: _spearman_to_truth(read(e2e / f"imputed_{tag}.h5ad"), truth) for tag in ("cpu", "cpu_seed1", "cudarun")}
    curves = {tag: pd.read_csv(e2e / f"model_{tag}" / "training_curves.csv") for tag in ("cpu", "cpu_seed1", "cuda")}
    final = {tag: float(c["val_pearson"].dropna().iloc[-1]) for tag, c in curves.items()}
    REPORT["accuracy_spearman_vs_truth"] = acc
    REPORT["final_val_pearson"] = final
    REPORT["first_train_loss"] = {tag: float(c["train_loss"].iloc[0]) for tag, c in curves.items()}
    assert all(np.isfinite(c[["train_loss", "val_loss"]].to_numpy()).all() for c in curves.values())
    # as accurate: no worse than the worse of the two CPU seeds, less 0.05
    assert acc["cudarun"] >= min(acc["cpu"], acc["cpu_seed1"]) - 0.05, acc
    assert final["cuda"] >= min(final["cpu"], final["cpu_seed1"]) - 0.05, final


def test_map_on_cuda_runs_search_and_mixture_on_the_gpu_within_seed_variation(e2e):
    runs = {tag: read(e2e / f"mapped_{tag}.h5ad") for tag in ("cpu", "cpu_seed1", "cuda")}
    info = {tag: a.uns[K.PROTEIN_PREDICTED] for tag, a in runs.items()}
    assert (info["cpu"]["backend"], info["cpu"]["gather_backend"]) == ("cpp", "cpp")
    assert (info["cuda"]["backend"], info["cuda"]["gather_backend"]) == ("cuda", "cuda")
    pred = {tag: frame(a, K.PROTEIN_PREDICTED) for tag, a in runs.items()}
    conf = {tag: a.obs[K.MAPPING_CONFIDENCE].to_numpy(np.float64) for tag, a in runs.items()}
    gap = {"proteome_gpu": float(np.abs(pred["cuda"] - pred["cpu"]).mean()),
           "proteome_seed": float(np.abs(pred["cpu_seed1"] - pred["cpu"]).mean()),
           "confidence_gpu": float(np.abs(conf["cuda"] - conf["cpu"]).mean()),
           "confidence_seed": float(np.abs(conf["cpu_seed1"] - conf["cpu"]).mean())}
    if K.MAPPED_CELL_TYPE in runs["cpu"].obs:
        labels = {tag: a.obs[K.MAPPED_CELL_TYPE].astype(str).to_numpy() for tag, a in runs.items()}
        gap["cell_type_agreement_gpu"] = float((labels["cuda"] == labels["cpu"]).mean())
        gap["cell_type_agreement_seed"] = float((labels["cpu_seed1"] == labels["cpu"]).mean())
    REPORT["map_mean_abs_diff"] = gap
    assert gap["proteome_gpu"] <= 2 * gap["proteome_seed"] + 1e-3, gap
    assert gap["confidence_gpu"] <= 2 * gap["confidence_seed"] + 1e-3, gap
    if "cell_type_agreement_gpu" in gap:
        assert 1 - gap["cell_type_agreement_gpu"] <= 2 * (1 - gap["cell_type_agreement_seed"]) + 0.01, gap


def test_map_without_adaptation_with_one_model_on_cuda_equals_cpu(e2e):
    from scprospatial.io import load
    from scprospatial.model import ScProSpatial
    from scprospatial.spatial import map_cells

    outputs = {}
    for device in ("cpu", "cuda"):
        model = ScProSpatial.load(e2e / "model_cpu" / "model.pt", device=device)
        rna = load(e2e / "sim" / "query_rna.h5ad", kind="rna")
        spatial = load(e2e / f"graph_{device}.h5ad", kind="spatial")
        map_cells(model, rna, spatial, k=10, adapt_epochs=0, seed=0)
        outputs[device] = spatial
    info = outputs["cuda"].uns[K.PROTEIN_PREDICTED]
    assert (info["backend"], info["gather_backend"]) == ("cuda", "cuda")
    diff = np.abs(frame(outputs["cuda"], K.PROTEIN_PREDICTED) - frame(outputs["cpu"], K.PROTEIN_PREDICTED)).max(axis=1)
    close = float((diff <= 1e-3).mean())
    REPORT["map_no_adaptation"] = {"fraction_of_cells_within_1e-3": close, "max_abs_diff": float(diff.max())}
    assert close >= 0.99, REPORT["map_no_adaptation"]
