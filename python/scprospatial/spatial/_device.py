"""Mapping on a GPU: the top-k search and the gather-average on torch CUDA tensors, chained without host round trips.

The compiled core's CUDA kernels read and write torch CUDA tensors in place (through ``__cuda_array_interface__``,
on torch's current stream), so the top-k indices and weights of a block of imaged cells stay on the GPU between the
search and the mixture. Only what the host needs comes back: the n x k indices, weights and similarities (the sparse
weight matrix and the confidence) and the n x p mixture. The search and the mixture equal the CPU kernels' bit for
bit on the same inputs; the softmax weights between them are computed by torch on the GPU in float64, which may
differ from numpy's in the last bit.
"""
from __future__ import annotations

import numpy as np

from .. import _ext
from ..errors import InputError
from ._kernels import resolve_backend


def _torch():
    import torch

    return torch


def _check_backend(backend: str) -> None:
    if backend not in ("auto", "cuda"):
        raise InputError(f"backend {backend!r} runs on the host, but these arrays are on a CUDA device "
                         "(use backend 'cuda' or 'auto')")
    resolve_backend("cuda")  # InputError naming why the CUDA kernels cannot run here


def _device_tensor(x, what: str, dtype, device=None):
    """x as a C-contiguous torch tensor of `dtype` (None: its own) on its CUDA device (converted there if needed)."""
    torch = _torch()
    if not (isinstance(x, torch.Tensor) and x.is_cuda):
        where = f"a CUDA tensor on {device}" if device is not None else "a torch CUDA tensor"
        raise InputError(f"{what} must be {where} like the other arrays, got {type(x).__name__}"
                         + (f" on {x.device}" if isinstance(x, torch.Tensor) else ""))
    if device is not None and x.device != device:
        raise InputError(f"{what} is on {x.device} but the other arrays on {device}")
    if x.ndim != 2:
        raise InputError(f"{what} must be a 2-d array, got shape {tuple(x.shape)}")
    return (x if dtype is None else x.to(dtype)).contiguous()


def _stream(device) -> int:
    return _torch().cuda.current_stream(device).cuda_stream


def topk_on_device(query, ref, k: int, *, backend: str = "auto"):
    """`topk_similarity` on torch CUDA tensors: (indices int64, similarities float32, 'cuda'), n x k tensors on the
    query's device, rows sorted by similarity (descending), ties by index, as on the CPU."""
    _check_backend(backend)
    torch = _torch()
    q = _device_tensor(query, "query embedding", torch.float32)
    r = _device_tensor(ref, "reference embedding", torch.float32, q.device)
    if q.shape[1] == 0 or q.shape[1] != r.shape[1]:
        raise InputError(f"query ({q.shape[1]} columns) and reference ({r.shape[1]} columns) must have the same "
                         "non-zero width")
    if len(r) < k:
        raise InputError(f"k={k} neighbours need at least {k} reference cells, got {len(r)}")
    for x, what in ((q, "query embedding"), (r, "reference embedding")):
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{what} hold non-finite values")
    idx = torch.empty((len(q), k), dtype=torch.int64, device=q.device)
    sim = torch.empty((len(q), k), dtype=torch.float32, device=q.device)
    _ext.require().topk_similarity(q, r, int(k), out_indices=idx, out_similarities=sim, stream=_stream(q.device))
    return idx, sim, "cuda"


def gather_on_device(idx, w, mean, sd=None, *, variance: bool = True, as_sd: bool = False, backend: str = "auto",
                     out=None):
    """`gather_mixture` on torch CUDA tensors: (mean, var or None) float32 n x p tensors on idx's device (or `out`,
    a preallocated pair of such tensors, written in place)."""
    _check_backend(backend)
    torch = _torch()
    ix = _device_tensor(idx, "idx", torch.int64)
    if ix.shape[1] < 1:
        raise InputError(f"idx must be an n x k integer array with k >= 1, got shape {tuple(ix.shape)}")
    wt = _device_tensor(w, "w", None, ix.device)
    if wt.dtype not in (torch.float32, torch.float64):
        wt = wt.to(torch.float64)
    if wt.shape != ix.shape:
        raise InputError(f"w has shape {tuple(wt.shape)}, expected {tuple(ix.shape)} (one weight per index)")
    mu = _device_tensor(mean, "mean", torch.float32, ix.device)
    s = None if sd is None else _device_tensor(sd, "sd", torch.float32, ix.device)
    if s is not None and s.shape != mu.shape:
        raise InputError(f"sd has shape {tuple(s.shape)}, expected {tuple(mu.shape)}")
    n, p = len(ix), mu.shape[1]
    if out is None:
        om = torch.empty((n, p), dtype=torch.float32, device=ix.device)
        ov = torch.empty((n, p), dtype=torch.float32, device=ix.device) if variance else None
    else:
        om, ov = out
        for arr, what in [(om, "out mean")] + ([(ov, "out var")] if variance else []):
            if not (isinstance(arr, torch.Tensor) and arr.device == ix.device and arr.dtype == torch.float32
                    and tuple(arr.shape) == (n, p) and arr.is_contiguous()):
                raise InputError(f"{what} must be a C-contiguous float32 tensor of shape {(n, p)} on {ix.device}")
    try:
        _ext.require().gather_mixture(ix, wt, mu, s, variance=variance, as_sd=as_sd, out_mean=om, out_var=ov,
                                   stream=_stream(ix.device))
    except IndexError as exc:
        raise InputError(str(exc)) from None
    return om, ov


def softmax_on_device(sim, temperature: float):
    """Row-wise softmax(sim / temperature) in float64 on sim's device (mapping.softmax_weights' formula)."""
    if not temperature > 0:
        raise InputError(f"temperature must be positive, got {temperature!r}")
    z = sim.double() / temperature
    z = z - z.max(dim=1, keepdim=True).values
    w = z.exp()
    return w / w.sum(dim=1, keepdim=True)


class DeviceSearch:
    """Search, weights and mixture for blocks of imaged cells on one GPU: the query and reference rows and the
    profiles go to the device once; a block's top-k indices and weights stay there between the search and the
    mixture. Called like mapping's host search: search(rows, out_mean, out_sd) -> (idx, w, sim) on the host, with
    the block's mixture mean and SD written into the host arrays out_mean and out_sd."""

    backend = "cuda"
    gather_backend = "cuda"
    info = {"backend": "cuda", "approximate": False}  # what uns records of the search

    def __init__(self, query: np.ndarray, ref: np.ndarray, mean: np.ndarray, sd: np.ndarray, *, k: int,
                 temperature: float, device):
        torch = _torch()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise InputError(f"the CUDA search needs a CUDA device, got {self.device}")
        self.k, self.temperature = int(k), float(temperature)
        self.query, self.ref = (torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
                                for x in (query, ref))
        self.mean, self.sd = (torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
                              for x in (mean, sd))

    def __call__(self, rows: slice, out_mean: np.ndarray, out_sd: np.ndarray):
        idx, sim, _ = topk_on_device(self.query[rows], self.ref, self.k, backend="cuda")
        w = softmax_on_device(sim, self.temperature)
        mean, sd = gather_on_device(idx, w, self.mean, self.sd, as_sd=True, backend="cuda")
        out_mean[...] = mean.cpu().numpy()
        out_sd[...] = sd.cpu().numpy()
        return idx.cpu().numpy(), w.cpu().numpy(), sim.cpu().numpy()
