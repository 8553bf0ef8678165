"""The compiled weighted gather-average (mapping's mixture over each imaged cell's top-k) and its wrapper.

The reference is the formula mapping used before the kernel: a CSR weight matrix times float64 copies of the
profiles. Every backend sums in float64 over j in order with one rounding per operation, so the C++ kernel,
its CUDA twin and the reference must agree bit for bit. The extension-level tests import nothing beyond
numpy, scipy and scprospatial._core (they also run on a GPU machine); the wrapper tests import the package.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scprospatial import _ext

core = _ext.core()
pytestmark = pytest.mark.skipif(core is None, reason="compiled extension scprospatial._core is not built")


def has_gpu() -> bool:
    return bool(core.compiled_with_cuda() and core.cuda_device_count() > 0)


def reference(idx, w, mean, sd=None, sd_out=False):
    """mapping.mixture() as it was: CSR(w) @ float64 profiles; returns float32 (mean, var) or (mean, SD)."""
    n, k = idx.shape
    wm = sparse.csr_matrix((np.asarray(w, np.float64).ravel(), idx.ravel(), np.arange(0, n * k + 1, k)),
                           shape=(n, len(mean)))
    mu = mean.astype(np.float64)
    m = np.asarray(wm @ mu)
    x2 = mu ** 2 if sd is None else sd.astype(np.float64) ** 2 + mu ** 2
    second = np.asarray(wm @ x2)
    var = np.maximum(second - m ** 2, 0.0)
    return m.astype(np.float32), (np.sqrt(var) if sd_out else var).astype(np.float32)


def inputs(n, k, m, p, seed, wdtype=np.float64, normalise=True):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, (n, k)).astype(np.int64)
    w = rng.random((n, k))
    if normalise:
        w /= w.sum(axis=1, keepdims=True)
    mean = (rng.standard_normal((m, p)) * 3 + 1).astype(np.float32)
    sd = rng.gamma(2.0, 0.3, (m, p)).astype(np.float32)
    return idx, w.astype(wdtype), mean, sd


def assert_bits(a, b):
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))


# (n, k, m, p): k=1, p=1, panels of 1024 columns and their edges, more rows than profiles
SHAPES = [(1, 1, 1, 1), (7, 1, 50, 3), (300, 10, 200, 1), (257, 10, 1000, 300), (64, 15, 30, 1025),
          (40, 3, 5, 2048)]


@pytest.mark.parametrize("n,k,m,p", SHAPES)
@pytest.mark.parametrize("wdtype", [np.float64, np.float32])
def test_equals_scipy_reference_bit_for_bit(n, k, m, p, wdtype):
    idx, w, mean, sd = inputs(n, k, m, p, seed=n + p, wdtype=wdtype)
    om, ov = core.gather_mixture(idx, w, mean, sd, threads=2)
    rm, rv = reference(idx, w, mean, sd)
    assert_bits(om, rm)
    assert_bits(ov, rv)
    assert_bits(core.gather_mixture(idx, w, mean, sd, threads=2, as_sd=True)[1], reference(idx, w, mean, sd, True)[1])
    # and the formula itself, independently of scipy (float64 tolerance)
    g = w.astype(np.float64)[..., None]
    mu, s = mean.astype(np.float64)[idx], sd.astype(np.float64)[idx]
    em = (g * mu).sum(1)
    np.testing.assert_allclose(om, em, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ov, np.maximum((g * (s ** 2 + mu ** 2)).sum(1) - em ** 2, 0), rtol=1e-5, atol=1e-5)


def test_mapping_shaped_inputs():
    """Top-k indices and softmax weights as mapping makes them (k=10, sorted by similarity, temperature 0.05)."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2000, 32)).astype(np.float32)
    r = rng.standard_normal((3000, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    idx, sim = core.topk_similarity(q, r, 10, threads=2)
    z = sim.astype(np.float64) / 0.05
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = rng.standard_normal((3000, 120)).astype(np.float32)
    sd = rng.random((3000, 120)).astype(np.float32)
    om, ov = core.gather_mixture(idx, w, mean, sd, threads=2)
    rm, rv = reference(idx, w, mean, sd)
    assert_bits(om, rm)
    assert_bits(ov, rv)


def test_k1_returns_the_weighted_row_and_its_variance():
    idx, w, mean, sd = inputs(50, 1, 20, 7, seed=1, normalise=False)
    om, ov = core.gather_mixture(idx, w, mean, sd)
    g = w[:, :1]
    np.testing.assert_allclose(om, g * mean[idx[:, 0]], rtol=1e-6)
    ones = np.ones_like(w)
    om1, ov1 = core.gather_mixture(idx, ones, mean, sd)
    assert_bits(om1, mean[idx[:, 0]])
    np.testing.assert_allclose(ov1, sd[idx[:, 0]] ** 2, rtol=1e-5, atol=1e-6)


def test_duplicates_zero_weights_and_unnormalised_rows():
    idx, w, mean, sd = inputs(30, 6, 40, 9, seed=2)
    idx[:, 3] = idx[:, 0]          # the same profile twice in every row
    w[:, 5] = 0.0                  # a zero weight still multiplies (finite) values: no effect
    om, ov = core.gather_mixture(idx, w, mean, sd)
    assert_bits(om, reference(idx, w, mean, sd)[0])
    assert_bits(ov, reference(idx, w, mean, sd)[1])
    # duplicates add up: the same as one index with the summed weight
    idx2, w2 = (np.ascontiguousarray(np.delete(a, [3, 5], axis=1)) for a in (idx, w))
    w2[:, 0] += w[:, 3]
    np.testing.assert_allclose(core.gather_mixture(idx2, w2, mean, sd)[0], om, rtol=1e-5, atol=1e-6)
    # weights used as given: doubling them doubles the mean
    om2, _ = core.gather_mixture(idx, 2 * w, mean, sd)
    np.testing.assert_allclose(om2, 2 * om, rtol=1e-6, atol=1e-6)
    # all-zero rows give zeros
    w[:4] = 0.0
    om, ov = core.gather_mixture(idx, w, mean, sd)
    assert (om[:4] == 0).all() and (ov[:4] == 0).all()


def test_without_sd_and_means_only():
    idx, w, mean, sd = inputs(100, 5, 60, 33, seed=4)
    om, ov = core.gather_mixture(idx, w, mean)  # components of variance 0: the spread only
    rm, rv = reference(idx, w, mean, None)
    assert_bits(om, rm)
    assert_bits(ov, rv)
    assert_bits(core.gather_mixture(idx, w, mean, as_sd=True)[1], reference(idx, w, mean, None, sd_out=True)[1])
    om2, none = core.gather_mixture(idx, w, mean, sd, variance=False)
    assert none is None
    assert_bits(om2, rm)


def test_threads_do_not_change_results():
    idx, w, mean, sd = inputs(3000, 10, 500, 70, seed=5)
    a = core.gather_mixture(idx, w, mean, sd, threads=1)
    b = core.gather_mixture(idx, w, mean, sd, threads=5)
    assert_bits(a[0], b[0])
    assert_bits(a[1], b[1])


@pytest.mark.parametrize("p", [7, 1024, 2100])
def test_instruction_sets_agree_bit_for_bit(monkeypatch, p):
    """AVX-512, AVX2 and baseline paths differ only in vector width (no FMA), so their bits agree."""
    idx, w, mean, sd = inputs(150, 9, 80, p, seed=15)
    results = {}
    for isa in ("avx512", "avx2", "portable"):
        monkeypatch.setenv("SCPROSPATIAL_TOPK_ISA", isa)
        results[core.topk_isa()] = core.gather_mixture(idx, w, mean, sd, threads=2, as_sd=True)
    assert "portable" in results
    rm, rs = reference(idx, w, mean, sd, sd_out=True)
    for om, osd in results.values():
        assert_bits(om, rm)
        assert_bits(osd, rs)


def test_preallocated_outputs_take_row_slices():
    idx, w, mean, sd = inputs(50, 4, 30, 11, seed=6)
    full_m, full_v = np.full((80, 11), -1, np.float32), np.full((80, 11), -1, np.float32)
    om, ov = core.gather_mixture(idx, w, mean, sd, out_mean=full_m[10:60], out_var=full_v[10:60])
    assert np.shares_memory(om, full_m) and np.shares_memory(ov, full_v)
    rm, rv = reference(idx, w, mean, sd)
    assert_bits(full_m[10:60], rm)
    assert_bits(full_v[10:60], rv)
    assert (full_m[:10] == -1).all() and (full_v[60:] == -1).all()
    with pytest.raises(ValueError, match="out_mean has shape"):
        core.gather_mixture(idx, w, mean, sd, out_mean=full_m[:49])


def test_layouts_are_checked_not_copied():
    idx, w, mean, sd = inputs(20, 3, 15, 8, seed=7)
    with pytest.raises(ValueError, match="mean must be a 2-d C-contiguous float32"):
        core.gather_mixture(idx, w, np.asfortranarray(mean), sd)
    with pytest.raises(ValueError, match="mean must be a 2-d C-contiguous float32"):
        core.gather_mixture(idx, w, mean.astype(np.float64), sd)
    with pytest.raises(ValueError, match="sd must be a 2-d C-contiguous float32"):
        core.gather_mixture(idx, w, mean, sd[:, ::2])
    with pytest.raises(ValueError, match="sd has shape"):
        core.gather_mixture(idx, w, mean, sd[:-1])
    with pytest.raises(ValueError, match="idx must be a 2-d C-contiguous int64"):
        core.gather_mixture(idx.astype(np.int32), w, mean, sd)
    with pytest.raises(ValueError, match="w must be a 2-d C-contiguous float32 or float64"):
        core.gather_mixture(idx, w.astype(np.float16), mean, sd)
    with pytest.raises(ValueError, match="w has shape"):
        core.gather_mixture(idx, w[:, :2].copy(), mean, sd)
    with pytest.raises(ValueError, match="unknown device"):
        core.gather_mixture(idx, w, mean, sd, device="tpu")
    if not core.compiled_with_cuda():
        with pytest.raises(RuntimeError, match="without CUDA"):
            core.gather_mixture(idx, w, mean, sd, device="cuda")


@pytest.mark.parametrize("bad", [15, -1, 2**40])
def test_out_of_range_index_is_an_error(bad):
    idx, w, mean, sd = inputs(20, 3, 15, 8, seed=8)
    idx[6, 2] = bad
    with pytest.raises(IndexError, match=rf"index {bad} \(row 6, column 2\) is out of range for 15 profile rows"):
        core.gather_mixture(idx, w, mean, sd)


@pytest.mark.skipif(core is None or not has_gpu(), reason="no CUDA kernels or no CUDA device here")
@pytest.mark.parametrize("n,k,m,p", SHAPES + [(70000, 10, 20000, 300)])
def test_cuda_equals_cpu(n, k, m, p):
    idx, w, mean, sd = inputs(n, k, m, p, seed=9)
    for args in ((idx, w, mean, sd), (idx, w.astype(np.float32), mean, sd), (idx, w, mean, None)):
        cpu = core.gather_mixture(*args, threads=2)
        gpu = core.gather_mixture(*args, device="cuda")
        assert_bits(gpu[0], cpu[0])
        assert_bits(gpu[1], cpu[1])
        assert_bits(core.gather_mixture(*args, device="cuda", as_sd=True)[1],
                    core.gather_mixture(*args, threads=2, as_sd=True)[1])
    assert core.gather_mixture(idx, w, mean, sd, device="cuda", variance=False)[1] is None


# ----------------------------------------------------------------------------- the Python wrapper
@pytest.fixture
def gm():
    from scprospatial.spatial._gather import gather_mixture

    return gather_mixture


def test_wrapper_backends_agree_and_handle_layouts(gm):
    idx, w, mean, sd = inputs(400, 10, 300, 130, seed=10)
    a = gm(idx, w, mean, sd, backend="cpp", threads=2)
    b = gm(idx.astype(np.int32), w, np.asfortranarray(mean), sd.astype(np.float64), backend="scipy")
    assert (a.backend, b.backend) == ("cpp", "scipy")
    assert_bits(a.mean, b.mean)
    assert_bits(a.var, b.var)
    rm, rv = reference(idx, w, mean, sd)
    assert_bits(a.mean, rm)
    assert_bits(a.var, rv)
    for backend in ("cpp", "scipy"):  # the SD as mapping's former mixture() gave it: sqrt in float64
        assert_bits(gm(idx, w, mean, sd, as_sd=True, backend=backend).var, reference(idx, w, mean, sd, sd_out=True)[1])
    assert gm(idx, w, mean, backend="scipy", variance=False).var is None


def test_wrapper_scipy_backend_in_column_chunks(gm, monkeypatch):
    from scprospatial.spatial import _gather

    idx, w, mean, sd = inputs(200, 7, 90, 37, seed=11)
    monkeypatch.setattr(_gather, "SCIPY_CHUNK_BYTES", 1)  # one column at a time
    got = gm(idx, w.astype(np.float32), mean, sd, backend="scipy")
    rm, rv = reference(idx, w.astype(np.float32), mean, sd)
    assert_bits(got.mean, rm)
    assert_bits(got.var, rv)


def test_wrapper_writes_into_out(gm):
    idx, w, mean, sd = inputs(50, 4, 30, 11, seed=12)
    full_m, full_s = np.zeros((100, 11), np.float32), np.zeros((100, 11), np.float32)
    for backend in ("cpp", "scipy"):
        got = gm(idx, w, mean, sd, as_sd=True, backend=backend, out=(full_m[50:], full_s[50:]))
        assert np.shares_memory(got.mean, full_m) and np.shares_memory(got.var, full_s)
        rm, rv = reference(idx, w, mean, sd)
        assert_bits(full_m[50:], rm)
        assert_bits(full_s[50:], reference(idx, w, mean, sd, sd_out=True)[1])
    from scprospatial.errors import InputError

    with pytest.raises(InputError, match="out mean must be a writable C-contiguous float32"):
        gm(idx, w, mean, sd, out=(full_m[:50, :5], full_s[:50]))


@pytest.mark.parametrize("backend", ["cpp", "scipy"])
def test_wrapper_errors(gm, backend):
    from scprospatial.errors import InputError

    idx, w, mean, sd = inputs(20, 3, 15, 8, seed=13)
    idx[2, 1] = 99
    with pytest.raises(InputError, match=r"index 99 \(row 2, column 1\) is out of range for 15 profile rows"):
        gm(idx, w, mean, sd, backend=backend)
    with pytest.raises(InputError, match="w has shape"):
        gm(idx, w[:, :2], mean, sd, backend=backend)
    with pytest.raises(InputError, match="integer array"):
        gm(idx.astype(float), w, mean, sd, backend=backend)
    with pytest.raises(InputError, match="sd has shape"):
        gm(np.zeros_like(idx), w, mean, sd[:, :3], backend=backend)
    with pytest.raises(InputError, match="unknown backend"):
        gm(idx, w, mean, sd, backend="torch")


def test_wrapper_falls_back_to_scipy_without_the_extension(gm, monkeypatch):
    idx, w, mean, sd = inputs(30, 4, 20, 6, seed=14)
    monkeypatch.setattr(_ext, "core", lambda: None)
    got = gm(idx, w, mean, sd)
    assert got.backend == "scipy"
    assert_bits(got.mean, reference(idx, w, mean, sd)[0])
