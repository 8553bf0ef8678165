"""Top-k search backends built once over a reference (spatial/_ann.py): faiss's exact index against the C++
kernel, the approximate IVF index's recall, determinism and its record in uns, and auto's size rule."""
from __future__ import annotations

import numpy as np
import pytest

from scprospatial.errors import InputError
from scprospatial.spatial import _ann
from scprospatial.spatial._mapping import make_search, resolve_topk_backend, topk_similarity

faiss = pytest.importorskip("faiss", reason="faiss-cpu is a core dependency; this installation lacks it")


def clustered(n: int, d: int, seed: int, centres: int = 20, noise: float = 0.5) -> np.ndarray:
    """Unit vectors around a few centres, as cell embeddings are (random vectors are the ANN worst case)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


@pytest.fixture(scope="module")
def data():
    return clustered(1500, 32, 1), clustered(8000, 32, 2)


@pytest.fixture(scope="module")
def exact(data):
    return topk_similarity(*data, 10, backend="cpp", threads=2)


def test_faiss_flat_is_exact(data, exact):
    idx, sim, used = topk_similarity(*data, 10, backend="faiss-flat", threads=2)
    assert used == "faiss-flat"
    np.testing.assert_allclose(sim, exact[1], atol=1e-5)
    # same neighbours wherever the similarities are not tied within float rounding
    assert (idx == exact[0]).mean() > 0.999


def test_ivf_recall_rises_to_exact_with_nprobe(data, exact):
    rec = {}
    for nprobe in (2, 16):
        idx, sim, used = topk_similarity(*data, 10, backend="faiss-ivf", threads=2, ivf={"nprobe": nprobe})
        assert used == "faiss-ivf" and (np.diff(sim, axis=1) <= 0).all()
        rec[nprobe] = recall(idx, exact[0])
    assert rec[16] > rec[2] and rec[16] > 0.9, rec
    # visiting every list is an exhaustive search: the exact neighbours
    nlist = _ann.IVFParams().lists(len(data[1]))
    idx, sim, _ = topk_similarity(*data, 10, backend="faiss-ivf", threads=2, ivf={"nprobe": nlist})
    np.testing.assert_allclose(sim, exact[1], atol=1e-5)


def test_ivf_is_deterministic_and_seeded(data):
    a = topk_similarity(*data, 10, backend="faiss-ivf", threads=2, ivf={"seed": 3})
    b = topk_similarity(*data, 10, backend="faiss-ivf", threads=1, ivf={"seed": 3})
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_ivf_completes_rows_with_too_few_candidates():
    # 64 lists over 300 references, one list visited: many queries see fewer than k references
    q, r = clustered(200, 16, 5), clustered(300, 16, 6)
    idx, sim, _ = topk_similarity(q, r, 20, backend="faiss-ivf", ivf={"nlist": 64, "nprobe": 1})
    assert (idx >= 0).all() and idx.max() < len(r)
    assert all(len(set(row)) == 20 for row in idx)


def test_faiss_threads_are_restored(data):
    before = faiss.omp_get_max_threads()
    topk_similarity(*data, 10, backend="faiss-ivf", threads=1)
    assert faiss.omp_get_max_threads() == before


def test_auto_switches_to_ivf_by_size(monkeypatch):
    assert resolve_topk_backend("auto", "cpu", 1000, 1000) == "cpp"
    assert _ann.choose_ann(10**6, 10**6) and not _ann.choose_ann(10**6, 1000)
    monkeypatch.setattr(_ann, "ANN_MIN_PAIRS", 1e6)
    monkeypatch.setattr(_ann, "ANN_MIN_REF", 500)
    from scprospatial.spatial import _mapping

    monkeypatch.setattr(_mapping, "choose_ann", _ann.choose_ann)
    assert resolve_topk_backend("auto", "cpu", 2000, 1000) == "faiss-ivf"
    s = make_search(clustered(1000, 8, 0), 2000, 5)
    assert s.info["backend"] == "faiss-ivf" and s.info["approximate"] and s.info["nprobe"] >= 1


def test_bad_ivf_parameters():
    with pytest.raises(InputError, match="unknown IVF parameter"):
        topk_similarity(clustered(50, 4, 0), clustered(50, 4, 1), 3, backend="faiss-ivf", ivf={"n_probe": 3})
    with pytest.raises(InputError, match="unknown backend"):
        topk_similarity(clustered(50, 4, 0), clustered(50, 4, 1), 3, backend="hnsw")
