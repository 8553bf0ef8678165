"""The GPU path on a GPU: the core's CUDA kernels on torch CUDA tensors (read and written in place) against the CPU
kernels, the mapping chain on the device against the host chain, and --device routing of the kNN graph.

Skipped, with the reason, where the core has no CUDA kernels or sees no GPU (tests/gpu/device_checks.sh runs them on
a GPU machine). Bit for bit where the kernels claim it: top-k indices and similarities, the gather's mean and
variance/SD on the same weights, the kNN graph. The chain's softmax weights are torch's float64 exp on the GPU
against numpy's on the host (equal to ~1 ulp), so the chain's mixture is compared to 1e-6 relative.
"""
from __future__ import annotations

import numpy as np
import pytest

from scprospatial import _constants as K
from scprospatial import _ext
from scprospatial.errors import InputError

core = _ext.core()
reason = _ext.cuda_unavailable_reason()
if reason is None:
    import torch

    if not torch.cuda.is_available():
        reason = "the core sees a CUDA device but torch does not"
pytestmark = pytest.mark.skipif(reason is not None, reason=f"no usable GPU: {reason}")


def unit(n, dim, seed):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def on_gpu(*arrays):
    return [None if a is None else torch.from_numpy(np.ascontiguousarray(a)).cuda() for a in arrays]


def assert_bits(gpu, cpu):
    gpu = gpu.cpu().numpy() if isinstance(gpu, torch.Tensor) else gpu
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    np.testing.assert_array_equal(gpu.view(np.int32) if gpu.dtype == np.float32 else gpu,
                                  cpu.view(np.int32) if cpu.dtype == np.float32 else cpu)


@pytest.mark.parametrize("nq,nr,dim,k", [(1, 5, 3, 5), (100, 1000, 17, 10), (3000, 20000, 64, 10),
                                         (257, 300, 40, 64)])
def test_topk_on_device_tensors_equals_the_cpu_kernel(nq, nr, dim, k):
    from scprospatial.spatial._mapping import topk_similarity

    q, r = unit(nq, dim, 1), unit(nr, dim, 2)
    ci, cs = core.topk_similarity(q, r, k, threads=2)
    gq, gr = on_gpu(q, r)
    gi, gs, used = topk_similarity(gq, gr, k)
    assert used == "cuda" and gi.is_cuda and gs.is_cuda and gi.dtype == torch.int64
    assert_bits(gi, ci)
    assert_bits(gs, cs)
    # host arrays through the CUDA kernel (copies): the same bits
    hi, hs, used = topk_similarity(q, r, k, backend="cuda")
    assert used == "cuda"
    assert_bits(hi, ci)
    assert_bits(hs, cs)


def test_topk_runs_on_torchs_current_stream():
    q, r = unit(500, 32, 3), unit(4000, 32, 4)
    ci, cs = core.topk_similarity(q, r, 8, threads=2)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        gq, gr = on_gpu(q, r)  # produced on `stream`: the kernel must run after these copies
        from scprospatial.spatial._device import topk_on_device

        gi, gs, _ = topk_on_device(gq, gr, 8)
    stream.synchronize()
    assert_bits(gi, ci)
    assert_bits(gs, cs)


def _gather_inputs(n, k, m, p, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, (n, k)).astype(np.int64)
    w = rng.random((n, k))
    w /= w.sum(axis=1, keepdims=True)
    mean = (rng.standard_normal((m, p)) * 3 + 1).astype(np.float32)
    sd = rng.gamma(2.0, 0.3, (m, p)).astype(np.float32)
    return idx, w, mean, sd


@pytest.mark.parametrize("n,k,m,p", [(1, 1, 1, 1), (300, 10, 200, 1), (257, 10, 1000, 300), (70000, 10, 20000, 64)])
def test_gather_on_device_tensors_equals_the_cpu_kernel(n, k, m, p):
    from scprospatial.spatial._gather import gather_mixture

    idx, w, mean, sd = _gather_inputs(n, k, m, p, seed=5)
    for wt, s, as_sd in ((w, sd, False), (w.astype(np.float32), sd, True), (w, None, False)):
        cpu = gather_mixture(idx, wt, mean, s, as_sd=as_sd, backend="cpp", threads=2)
        got = gather_mixture(*on_gpu(idx, wt, mean, s), as_sd=as_sd)
        assert got.backend == "cuda" and got.mean.is_cuda
        assert_bits(got.mean, cpu.mean)
        assert_bits(got.var, cpu.var)
    means_only = gather_mixture(*on_gpu(idx, w, mean, sd), variance=False)
    assert means_only.var is None
    assert_bits(means_only.mean, gather_mixture(idx, w, mean, sd, backend="cpp").mean)


def test_gather_on_device_refuses_a_bad_index_and_writes_nothing():
    from scprospatial.spatial._gather import gather_mixture

    idx, w, mean, sd = _gather_inputs(20, 3, 15, 8, seed=6)
    idx[6, 2] = 15
    out = (torch.full((20, 8), 7.0, device="cuda"), torch.full((20, 8), 7.0, device="cuda"))
    with pytest.raises(InputError, match=r"index 15 \(row 6, column 2\) is out of range for 15 profile rows"):
        gather_mixture(*on_gpu(idx, w, mean, sd), out=out)
    assert bool((out[0] == 7).all()) and bool((out[1] == 7).all())


def test_mixed_host_and_device_arrays_are_refused():
    from scprospatial.spatial._gather import gather_mixture
    from scprospatial.spatial._mapping import topk_similarity

    q, r = unit(10, 4, 7), unit(20, 4, 8)
    with pytest.raises(InputError, match="reference embedding must be a CUDA tensor on cuda:0"):
        topk_similarity(on_gpu(q)[0], r, 3)
    with pytest.raises(InputError, match="must be a torch CUDA tensor"):
        topk_similarity(torch.from_numpy(q), on_gpu(r)[0], 3)  # a CPU tensor beside a CUDA one
    idx, w, mean, sd = _gather_inputs(10, 3, 15, 4, seed=9)
    with pytest.raises(InputError, match="mean must be a CUDA tensor on cuda:0"):
        gather_mixture(*on_gpu(idx, w), mean, None)
    with pytest.raises(ValueError, match="is a CUDA array but"):
        core.topk_similarity(on_gpu(q)[0], r, 3)


@pytest.mark.skipif(reason is None and torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_arrays_on_two_gpus_are_refused():
    q, r = unit(10, 4, 7), unit(20, 4, 8)
    gq = torch.from_numpy(q).to("cuda:0")
    gr = torch.from_numpy(r).to("cuda:1")
    with pytest.raises(InputError, match="is on cuda:1 but the other arrays on cuda:0"):
        from scprospatial.spatial._mapping import topk_similarity

        topk_similarity(gq, gr, 3)
    oi = torch.empty((10, 3), dtype=torch.int64, device="cuda:0")
    os_ = torch.empty((10, 3), dtype=torch.float32, device="cuda:0")
    with pytest.raises(ValueError, match="ref is on CUDA device 1 but query on device 0"):
        core.topk_similarity(gq, gr, 3, out_indices=oi, out_similarities=os_)


def test_device_chain_equals_the_host_chain():
    """One mapping block on the GPU (search, softmax, mixture chained there) against the host chain."""
    from scprospatial.spatial._device import DeviceSearch
    from scprospatial.spatial._mapping import _HostSearch

    q, r = unit(5000, 24, 10), unit(3000, 24, 11)
    _, _, mean, sd = _gather_inputs(1, 1, 3000, 50, seed=12)
    rows = slice(1000, 4500)
    host = _HostSearch(q, r, mean, sd, k=10, temperature=0.07, backend="cpp", threads=2, device="cpu")
    dev = DeviceSearch(q, r, mean, sd, k=10, temperature=0.07, device="cuda")
    hm, hs = np.empty((3500, 50), np.float32), np.empty((3500, 50), np.float32)
    dm, ds = np.empty_like(hm), np.empty_like(hs)
    hi, hw, hsim = host(rows, hm, hs)
    di, dw, dsim = dev(rows, dm, ds)
    np.testing.assert_array_equal(di, hi)
    assert_bits(dsim, hsim)
    np.testing.assert_allclose(dw, hw, rtol=1e-14, atol=0)
    np.testing.assert_allclose(dm, hm, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ds, hs, rtol=1e-6, atol=1e-6)


def test_spatial_graph_device_cuda_equals_cpu_and_is_recorded():
    import anndata as ad

    from scprospatial.spatial import spatial_neighbors

    rng = np.random.default_rng(13)
    adata = ad.AnnData(np.zeros((20000, 1), np.float32))
    adata.obsm[K.SPATIAL] = rng.random((20000, 2)) * 3000
    gpu = spatial_neighbors(adata, n_neighs=10, device="cuda", copy=True)
    auto = spatial_neighbors(adata, n_neighs=10, device="auto", copy=True)
    cpu = spatial_neighbors(adata, n_neighs=10, device="cpu", copy=True)
    for got in (gpu, auto):
        assert got.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "cuda"
        for key in (K.SPATIAL_DISTANCES, K.SPATIAL_CONNECTIVITIES):
            a, b = got.obsp[key], cpu.obsp[key]
            np.testing.assert_array_equal(a.indptr, b.indptr)
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.data, b.data)
    assert cpu.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "cpp"
