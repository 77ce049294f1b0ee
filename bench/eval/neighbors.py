"""Exact cosine nearest neighbours of query features among training features, with a canonical order.

Backends (FAISS `IndexFlatIP`, torch matmul + topk) search in float32, where rounding and tie handling differ between
libraries and devices. So that every backend gives the *same* neighbours, the backend only proposes `k + MARGIN`
candidates; they are re-ranked by exact similarities, ordered by (similarity descending, training index ascending).

Exactness: features are snapped to a grid of 2^-b (b ≤ 22 bits, so d · 2^(2b) ≤ 2^53); a float64 dot product of
two snapped rows is then an integer multiple of 2^-2b below 2^53 in magnitude, so it is computed without rounding
by any kernel in any order (GEMM, gather + sum, CPU or CUDA). Duplicated features tie exactly. When the backend's
float32 error could have pushed a true top-k neighbour out of the candidates (the k-th and last candidate are closer
than twice the float32 error bound d · 2^-24), that query is searched again exhaustively in float64.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .features import snap_features

MARGIN = 10  # extra candidates per query; enough that exhaustive re-searches are rare on real features
BACKENDS = ("auto", "faiss", "torch")
_FAISS_GPU_MAX_K = 2048  # GpuIndexFlat's largest k
_BLOCK_ELEMENTS = 1 << 25  # elements per temporary block (256 MiB in float64)
_RERANK_ELEMENTS = 1 << 23  # gathered candidate rows per block: small blocks stay in cache (measured on 2 CPU cores)


@dataclass(frozen=True)
class Neighbors:
    """indices: (Q, k) int64 training indices, nearest first, ties by lower index; sims: (Q, k) float64 cosines."""

    indices: Tensor
    sims: Tensor


def search_neighbors(train: Tensor, queries: Tensor, k: int, *, backend: str = "auto") -> Neighbors:
    """The k nearest training rows of each query by cosine similarity (k is clamped to the training-set size).

    train: (N, d), queries: (Q, d) float32 L2-normalised rows on one device, as `prepare_features` returns them
    (they are snapped again, a no-op on prepared rows, so that the similarities are exact).
    backend: "faiss", "torch" or "auto" (FAISS where it runs on the features' device, else torch).
    """
    train, queries = _check_unit_rows(train, "train"), _check_unit_rows(queries, "queries")
    if queries.device != train.device:
        raise ValueError(f"train features are on {train.device} but queries on {queries.device}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if train.shape[1] != queries.shape[1]:
        raise ValueError(f"train features have d={train.shape[1]} but queries d={queries.shape[1]}")
    k = min(k, train.shape[0])
    num_candidates = min(train.shape[0], k + MARGIN)
    candidates = propose_candidates(train, queries, num_candidates, resolve_backend(backend, queries.device))
    ranked = rerank_candidates(train, queries, candidates)
    result = Neighbors(ranked.indices[:, :k], ranked.sims[:, :k])
    if num_candidates == train.shape[0]:
        return result  # the candidates were the whole training set: nothing can be missing
    return _research_unsure(train, queries, result, last_sims=ranked.sims[:, -1])


def _check_unit_rows(x: Tensor, name: str) -> Tensor:
    if x.ndim != 2 or x.dtype != torch.float32:
        raise ValueError(f"{name} features must be a float32 (N, d) tensor, got {x.dtype} {tuple(x.shape)}")
    norms = x.norm(dim=1)
    if (~torch.isfinite(norms) | (((norms - 1).abs() > 1e-3) & (norms > 0))).any():  # zero rows are allowed
        raise ValueError(f"{name} features must have unit L2 norm rows: pass them through prepare_features first")
    return snap_features(x)


def resolve_backend(backend: str, device: torch.device) -> str:
    """"faiss" or "torch" for `backend` on `device`; "auto" prefers FAISS when it can search where the data is."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r}; valid: {list(BACKENDS)}")
    faiss = _import_faiss()
    if backend == "faiss" and faiss is None:
        raise ValueError("backend='faiss' but faiss is not installed (pip install faiss-cpu); use 'torch' or 'auto'")
    if backend != "auto":
        return backend
    if faiss is None or device.type not in ("cpu", "cuda"):
        return "torch"
    return "faiss" if device.type == "cpu" or _faiss_has_gpu(faiss) else "torch"


def propose_candidates(train: Tensor, queries: Tensor, k: int, backend: str) -> Tensor:
    """(Q, k) int64 training indices of the k highest float32 inner products per query (order unspecified)."""
    if backend == "faiss":
        return _faiss_candidates(train, queries, k)
    return _torch_candidates(train, queries, k)


def _torch_candidates(train: Tensor, queries: Tensor, k: int) -> Tensor:
    chunk = max(1, _BLOCK_ELEMENTS // (2 * train.shape[0]))  # float32 (chunk, N) similarity blocks
    out = []
    with _full_float32_matmul(queries.device):
        for start in range(0, queries.shape[0], chunk):
            sims = queries[start:start + chunk] @ train.T
            out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out)


def _faiss_candidates(train: Tensor, queries: Tensor, k: int) -> Tensor:
    faiss = _import_faiss()
    xb = train.detach().cpu().contiguous().numpy()
    xq = queries.detach().cpu().contiguous().numpy()
    if queries.is_cuda and _faiss_has_gpu(faiss) and k <= _FAISS_GPU_MAX_K:
        resources = faiss.StandardGpuResources()  # kept alive by this frame until the search is done
        index = faiss.GpuIndexFlatIP(resources, xb.shape[1])
    else:
        index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    _, idx = index.search(xq, k)
    return torch.from_numpy(idx).to(device=queries.device, dtype=torch.int64)


def rerank_candidates(train: Tensor, queries: Tensor, candidates: Tensor) -> Neighbors:
    """The (Q, K) candidates with exact float64 similarities, in canonical order."""
    train64 = train.to(torch.float64)  # one conversion up front: gathering float64 rows beats converting per chunk
    chunk = max(1, _RERANK_ELEMENTS // (candidates.shape[1] * train.shape[1]))
    indices, sims = [], []
    for start in range(0, queries.shape[0], chunk):
        cand = candidates[start:start + chunk]
        q = queries[start:start + chunk].to(torch.float64).unsqueeze(2)
        ranked = canonical_topk(torch.bmm(train64[cand], q).squeeze(2), cand, cand.shape[1])
        indices.append(ranked.indices)
        sims.append(ranked.sims)
    return Neighbors(torch.cat(indices), torch.cat(sims))


def canonical_topk(sims: Tensor, indices: Tensor, k: int) -> Neighbors:
    """The first k of each row ordered by similarity descending, then index ascending (stable sorts make it total)."""
    by_index = indices.argsort(dim=1)
    indices, sims = indices.gather(1, by_index), sims.gather(1, by_index)
    order = sims.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return Neighbors(indices.gather(1, order), sims.gather(1, order))


def _research_unsure(train: Tensor, queries: Tensor, result: Neighbors, last_sims: Tensor) -> Neighbors:
    """Search exhaustively the queries whose k-th exact similarity is within float32 error of the last candidate's:
    there a neighbour the backend ranked just below the candidates could belong in the top k."""
    tolerance = 2.0 * train.shape[1] * 2.0**-23  # twice the float32 dot-product error bound d·u, with slack
    unsure = (result.sims[:, -1] - last_sims <= tolerance).nonzero().flatten()
    if unsure.numel() == 0:
        return result
    exact = exhaustive_neighbors(train, queries[unsure], result.indices.shape[1])
    indices, sims = result.indices.clone(), result.sims.clone()
    indices[unsure], sims[unsure] = exact.indices, exact.sims
    return Neighbors(indices, sims)


def exhaustive_neighbors(train: Tensor, queries: Tensor, k: int) -> Neighbors:
    """Canonical top-k by float64 GEMM over all training rows, in blocks (exact on snapped features)."""
    q_chunk = min(queries.shape[0], 512)
    t_block = max(k, _BLOCK_ELEMENTS // q_chunk)
    indices, sims = [], []
    for qs in range(0, queries.shape[0], q_chunk):
        q = queries[qs:qs + q_chunk].to(torch.float64)
        best = Neighbors(q.new_empty((q.shape[0], 0), dtype=torch.int64), q.new_empty((q.shape[0], 0)))
        for ts in range(0, train.shape[0], t_block):
            block = train[ts:ts + t_block].to(torch.float64)
            ids = torch.arange(ts, ts + block.shape[0], device=q.device).expand(q.shape[0], -1)
            best = canonical_topk(torch.cat([best.sims, q @ block.T], 1), torch.cat([best.indices, ids], 1), k)
        indices.append(best.indices)
        sims.append(best.sims)
    return Neighbors(torch.cat(indices), torch.cat(sims))


@contextmanager
def _full_float32_matmul(device: torch.device) -> Any:
    """No TF32 and no autocast inside: the candidate error bound assumes float32 products and sums."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_has_gpu(faiss: Any) -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
