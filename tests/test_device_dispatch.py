"""The GPU path's dispatch, checked where no GPU is needed: how --device and the backends resolve, the one-line errors
when the GPU cannot be used, and the core's refusal of mixed or malformed device arrays.

Whether a GPU "is there" is set per test by replacing `_ext.cuda_unavailable_reason`, so these tests mean the same on
a GPU machine. The core is given stand-in device arrays (objects with a `__cuda_array_interface__` whose pointer is
never read: every check runs before any kernel). The CUDA runs themselves: tests/test_device_cuda.py and
tests/test_gpu_end_to_end.py, skipped without a GPU.
"""
from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scprospatial import _constants as K
from scprospatial import _ext
from scprospatial.errors import InputError
from scprospatial.spatial import knn_graph, spatial_neighbors
from scprospatial.spatial._gather import gather_mixture
from scprospatial.spatial._kernels import knn_arrays, resolve_backend
from scprospatial.spatial._mapping import _block_search, resolve_topk_backend, topk_similarity

core = _ext.core()
needs_core = pytest.mark.skipif(core is None, reason="compiled extension scprospatial._core is not built")
NO_GPU = "no CUDA device is visible"
NO_KERNELS = "scprospatial's C++ core was built without CUDA kernels (reinstall with SCPROSPATIAL_CUDA=1)"


@pytest.fixture
def gpu(monkeypatch):
    """gpu(reason): make the CUDA kernels look unavailable for `reason`, or available with None."""
    def set_state(reason: str | None):
        monkeypatch.setattr(_ext, "cuda_unavailable_reason", lambda: reason)

    return set_state


def points(n=300, seed=0):
    return np.random.default_rng(seed).random((n, 2)) * 100


class FakeCudaArray:
    """A stand-in device array: its interface is read, its pointer never is."""

    def __init__(self, shape, typestr="<f4", strides=None, readonly=False, ptr=4096):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly),
                                         "strides": strides, "version": 3, "stream": 1}


# ----------------------------------------------------------------------------- graph backends and --device
@needs_core
@pytest.mark.parametrize("device", [None, "auto", "cpu"])
def test_without_a_gpu_every_device_but_cuda_is_the_cpu_kernel(gpu, device):
    gpu(NO_GPU)
    assert resolve_backend("auto", device=device) == "cpp"
    assert knn_arrays(points(), 5, device=device).backend == "cpp"


@pytest.mark.parametrize("reason", [NO_GPU, NO_KERNELS])
def test_device_cuda_without_a_usable_gpu_is_one_line_input_error(gpu, reason):
    gpu(reason)
    for backend in ("auto", "cuda"):
        with pytest.raises(InputError) as err:
            resolve_backend(backend, device="cuda")
        assert str(err.value) == f"device 'cuda': {reason}" and "\n" not in str(err.value)


@needs_core
def test_auto_picks_the_cuda_kernel_where_there_is_one(gpu):
    gpu(None)
    assert resolve_backend("auto", device="auto") == "cuda"
    assert resolve_backend("auto", device="cuda") == "cuda"
    assert resolve_backend("auto", device=None) == "cpp"  # the library default: the backend decides
    assert resolve_backend("auto", device="cpu") == "cpp"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'auto' choosing the CPU for a graph without a CUDA kernel is not news
        assert resolve_backend("auto", device="auto", cuda_kernel=False) == "cpp"
    with pytest.warns(UserWarning, match="no CUDA kernel"):  # the GPU asked for by name: said so
        assert resolve_backend("auto", device="cuda", cuda_kernel=False) == "cpp"


@needs_core
def test_knn_beyond_the_cuda_kernels_k_runs_on_the_cpu(gpu):
    gpu(None)
    k = core.CUDA_KNN_MAX_K + 1
    x = points(n=k + 20)
    assert knn_arrays(x, k, device="auto").backend == "cpp"
    with pytest.warns(UserWarning, match="no CUDA kernel"):
        assert knn_arrays(x, k, device="cuda").backend == "cpp"


@pytest.mark.parametrize("backend,device", [("cpp", "cuda"), ("scipy", "cuda"), ("cuda", "cpu")])
def test_backend_and_device_must_agree(backend, device):
    with pytest.raises(InputError, match=f"backend '{backend}' runs on the"):
        resolve_backend(backend, device=device)


def test_unknown_device_and_backend_are_input_errors():
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        resolve_backend("auto", device="tpu")
    with pytest.raises(InputError, match="unknown backend 'gpu'"):
        knn_graph(points(), 5, backend="gpu")


@needs_core
def test_spatial_neighbors_records_the_backend_that_ran(gpu):
    gpu(NO_GPU)
    adata = ad.AnnData(np.zeros((300, 1), np.float32))
    adata.obsm[K.SPATIAL] = points()
    spatial_neighbors(adata, n_neighs=6, device="auto")
    assert adata.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "cpp"
    gpu(None)
    with pytest.warns(UserWarning, match="no CUDA kernel"):
        spatial_neighbors(adata, method="radius", radius=10.0, device="cuda")
    assert adata.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "cpp"
    with pytest.warns(UserWarning, match="device 'cuda' is not used"):
        spatial_neighbors(adata, method="delaunay", device="cuda")
    assert adata.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "scipy"


# ----------------------------------------------------------------------------- mapping: top-k and gather backends
@needs_core
def test_topk_backend_follows_the_models_device(gpu):
    gpu(None)
    assert resolve_topk_backend("auto", "cuda") == "cuda"
    assert resolve_topk_backend("auto", "cuda:1") == "cuda"
    assert resolve_topk_backend("auto", "cpu") == "cpp"
    assert resolve_topk_backend("cuda", "cpu") == "cuda"  # asked for by name: the kernel, through host copies
    gpu(NO_KERNELS)
    assert resolve_topk_backend("auto", "cuda") == "torch"  # a GPU model without CUDA kernels: torch there
    with pytest.raises(InputError, match="backend 'cuda': scprospatial's C\\+\\+ core was built without CUDA"):
        resolve_topk_backend("cuda", "cuda")


@needs_core
def test_map_searches_on_the_host_for_a_cpu_model(gpu):
    gpu(None)  # even with a GPU, a model on the CPU maps there
    q, r = points(20, 1).astype(np.float32), points(30, 2).astype(np.float32)
    mean = np.ones((30, 3), np.float32)
    search = _block_search(q, r, mean, mean, k=4, temperature=0.1, backend="auto", threads=1, device="cpu")
    assert (search.backend, search.gather_backend) == ("cpp", "cpp")
    out_mean, out_sd = np.empty((20, 3), np.float32), np.empty((20, 3), np.float32)
    idx, w, sim = search(slice(0, 20), out_mean, out_sd)
    assert idx.shape == w.shape == sim.shape == (20, 4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(out_mean, 1.0, rtol=1e-6)


def test_python_wrappers_send_device_arrays_to_the_gpu_path(gpu):
    q, r = FakeCudaArray((5, 3)), FakeCudaArray((7, 3))
    gpu(NO_GPU)
    with pytest.raises(InputError, match="device 'cuda': no CUDA device is visible"):
        topk_similarity(q, r, 2)
    with pytest.raises(InputError, match="device 'cuda': no CUDA device is visible"):
        gather_mixture(FakeCudaArray((5, 2), "<i8"), np.ones((5, 2)), np.ones((9, 4), np.float32))
    gpu(None)
    with pytest.raises(InputError, match="query embedding must be a torch CUDA tensor"):
        topk_similarity(q, r, 2)
    with pytest.raises(InputError, match="backend 'cpp' runs on the host"):
        topk_similarity(q, r, 2, backend="cpp")
    with pytest.raises(InputError, match="k must be a positive integer"):
        topk_similarity(q, r, 0)


# ----------------------------------------------------------------------------- the core's dispatch on the arrays
@needs_core
def test_core_refuses_mixed_host_and_device_arrays():
    q, r = FakeCudaArray((5, 3)), np.zeros((7, 3), np.float32)
    with pytest.raises(ValueError, match="query is a CUDA array but ref is not: pass every array on the same device"):
        core.topk_similarity(q, r, 2)
    with pytest.raises(ValueError, match="out_mean is a CUDA array but idx is not"):
        core.gather_mixture(np.zeros((5, 2), np.int64), np.ones((5, 2)), np.ones((9, 4), np.float32),
                            out_mean=FakeCudaArray((5, 4)), variance=False)
    with pytest.raises(ValueError, match="device 'cpu' was asked for, but query is a CUDA array"):
        core.topk_similarity(q, FakeCudaArray((7, 3)), 2, device="cpu", out_indices=FakeCudaArray((5, 2), "<i8"),
                             out_similarities=FakeCudaArray((5, 2)))
    with pytest.raises(ValueError, match="out_indices and out_similarities are for CUDA arrays"):
        core.topk_similarity(r[:5], r, 2, out_indices=np.zeros((5, 2), np.int64))
    with pytest.raises(ValueError, match="points is a CUDA array: the kNN grid is built on the host"):
        core.knn_graph(FakeCudaArray((9, 2), "<f8"), 2)


@needs_core
def test_core_checks_device_arrays_before_any_kernel():
    q, r = FakeCudaArray((5, 3)), FakeCudaArray((7, 3))
    oi, os_ = FakeCudaArray((5, 2), "<i8"), FakeCudaArray((5, 2))
    cases = [
        (dict(query=q, ref=r, k=2), "need CUDA outputs: pass out_indices and out_similarities"),
        (dict(query=q, ref=FakeCudaArray((7, 4)), k=2, out_indices=oi, out_similarities=os_),
         r"ref has shape \(7, 4\), expected \(any, 3\)"),
        (dict(query=FakeCudaArray((5, 3), "<f8"), ref=r, k=2, out_indices=oi, out_similarities=os_),
         "query must be a 2-d C-contiguous float32 array .* got CUDA <f8"),
        (dict(query=FakeCudaArray((5, 3), strides=(4, 20)), ref=r, k=2, out_indices=oi, out_similarities=os_),
         "query must be a 2-d C-contiguous float32 array .* strides"),
        (dict(query=q, ref=r, k=2, out_indices=FakeCudaArray((5, 2), "<i8", readonly=True), out_similarities=os_),
         "out_indices is a read-only CUDA array"),
        (dict(query=q, ref=r, k=3, out_indices=oi, out_similarities=os_), r"out_indices has shape \(5, 2\)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            core.topk_similarity(**kwargs)
    idx, w, mean = FakeCudaArray((5, 2), "<i8"), FakeCudaArray((5, 2), "<f8"), FakeCudaArray((9, 4))
    with pytest.raises(ValueError, match="need CUDA outputs: pass out_mean and out_var"):
        core.gather_mixture(idx, w, mean)
    with pytest.raises(ValueError, match="w must be a 2-d C-contiguous float32 or float64 array"):
        core.gather_mixture(idx, FakeCudaArray((5, 2), "<f2"), mean, out_mean=FakeCudaArray((5, 4)),
                            variance=False)
    with pytest.raises(ValueError, match=r"sd has shape \(9, 5\), expected \(9, 4\)"):
        core.gather_mixture(idx, w, mean, FakeCudaArray((9, 5)), out_mean=FakeCudaArray((5, 4)), variance=False)


@needs_core
def test_core_without_usable_cuda_says_why():
    """Well-formed device arrays reach the CUDA path: a CPU build says it has no CUDA, a CUDA build without a
    device says so, and on a GPU the stand-in pointer is refused as not device memory."""
    q, r = FakeCudaArray((5, 3)), FakeCudaArray((7, 3))
    oi, os_ = FakeCudaArray((5, 2), "<i8"), FakeCudaArray((5, 2))
    if not core.compiled_with_cuda():
        error, message = RuntimeError, "built without CUDA"
    elif core.cuda_device_count() == 0:
        error, message = RuntimeError, "no CUDA device is visible"
    else:
        error, message = ValueError, "query is not CUDA device memory"
    with pytest.raises(error, match=message):
        core.topk_similarity(q, r, 2, out_indices=oi, out_similarities=os_)
    with pytest.raises(error, match=message.replace("query", "idx")):
        core.gather_mixture(FakeCudaArray((5, 2), "<i8"), FakeCudaArray((5, 2), "<f8"), FakeCudaArray((9, 4)),
                            out_mean=FakeCudaArray((5, 4)), out_var=FakeCudaArray((5, 4)))


# ----------------------------------------------------------------------------- the command line
def _torch_sees_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_ext.cuda_ready(), reason="a usable GPU is here: --device cuda would run")
def test_spatial_graph_device_cuda_without_gpu_is_one_line_and_writes_nothing(cli, tmp_path):
    rng = np.random.default_rng(3)
    pd.DataFrame({"CellID": np.arange(200), "X": rng.random(200) * 500, "Y": rng.random(200) * 500,
                  "CD3": rng.gamma(2, size=200), "CD20": rng.gamma(2, size=200)}).to_csv(tmp_path / "cells.csv",
                                                                                         index=False)
    out = tmp_path / "graph.h5ad"
    proc = cli("spatial-graph", tmp_path / "cells.csv", "--out", out, "--device", "cuda")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "device 'cuda'" in lines[-1] and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".graph*"))
    ok = cli("spatial-graph", tmp_path / "cells.csv", "--out", out, "--device", "auto", "--k", "5")
    assert ok.returncode == 0, ok.stderr
    assert ad.read_h5ad(out).uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] in ("cpp", "scipy")


@pytest.mark.skipif(_torch_sees_gpu(), reason="torch sees a GPU here: --device cuda would run")
@pytest.mark.parametrize("command", ["train", "map"])  # impute loads the model as map does
def test_torch_steps_with_device_cuda_without_gpu_are_one_line(cli, tmp_path, command):
    stub = tmp_path / "in.h5ad"
    ad.AnnData(np.ones((4, 3), np.float32)).write_h5ad(stub)
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read: the device is checked first")
    args = {"train": ["train", stub, "--outdir", tmp_path / "m"],
            "map": ["map", "--model", model, "--rna", stub, "--spatial", stub, "--out", tmp_path / "o.h5ad"]}[command]
    proc = cli(*args, "--device", "cuda")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--device cuda was requested but torch sees no CUDA device")
    assert not (tmp_path / "o.h5ad").exists() and not (tmp_path / "m").exists()
