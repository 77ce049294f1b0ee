"""Exact cosine nearest neighbours of query features among training features, with a canonical order.

Backends (FAISS `IndexFlatIP`, torch matmul + topk) search in float32, where rounding and tie handling differ between
libraries and devices. So that every backend gives the *same* neighbours, the backend only proposes `k + MARGIN`
candidates with their float32 scores; the answer is decided by exact similarities, ordered by (similarity
descending, training index ascending).

Exactness: features are snapped to a grid of 2^-b (b ≤ 22 bits, so d · 2^(2b) ≤ 2^53); a float64 dot product of
two snapped rows is then an integer multiple of 2^-2b below 2^53 in magnitude, so it is computed without rounding
by any kernel in any order (GEMM, sampled matmul, gather + sum, CPU or CUDA). Duplicated features tie exactly.

Cost: float64 is paid only where float32 cannot decide. Every float32 score is within E = d · 2^-23 of the exact
similarity (`float32_error_bound`). A candidate scored more than 2E below the k-th float32 score has k candidates
strictly above it, so it is never computed exactly; the others get exact float64 similarities in one sampled matmul
(on CPU; no gathered (Q, K, d) copies), and only rows whose exact order differs from the backend's are sorted. When
a row the backend did not propose could still reach the top k (the k-th exact similarity is within E of the last
candidate's float32 score), that query is searched again exhaustively in float64.
"""

from __future__ import annotations

import math
import warnings
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
_RERANK_ELEMENTS = 1 << 23  # gathered candidate rows per block, off CPU (where the sampled matmul is used)
_QUERY_TILE_ELEMENTS = 1 << 20  # query tile of the sampled matmul: 8 MiB of float64 rows stay in cache (measured)


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
    train, queries = _check_inputs(train, queries, k)
    k = min(k, train.shape[0])
    num_candidates = min(train.shape[0], k + MARGIN)
    scores, candidates = scored_candidates(train, queries, num_candidates, resolve_backend(backend, queries.device))
    bound, scores = float32_error_bound(train.shape[1]), scores.to(torch.float64)
    # below the k-th score by more than 2E: exact < k-th score − E ≤ the exact sims of the first k candidates
    maybe = scores >= scores[:, k - 1:k] - 2.0 * bound
    ranked = canonical_order(exact_similarities(train, queries, candidates, maybe), candidates, k)
    if num_candidates == train.shape[0]:
        return ranked  # the candidates were the whole training set: nothing can be missing
    # an unproposed row scored ≤ the last candidate in float32, so its exact similarity is ≤ that score + E
    return _research_unsure(train, queries, ranked, unsure=ranked.sims[:, -1] <= scores[:, -1] + bound)


def float32_error_bound(dim: int) -> float:
    """E ≥ |fl32(x·y) − x·y| for the backends' float32 scores of two checked, snapped rows x, y of dimension d.

    Any float32 dot product (any summation order, blocked or not, with or without FMA: BLAS sgemm, FAISS SIMD,
    cuBLAS without TF32) obeys |fl(x·y) − x·y| ≤ γ_d Σ|x_i y_i| ≤ γ_d ‖x‖‖y‖ with γ_d = d·u / (1 − d·u), u = 2^-24
    (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). Rows pass `_check_unit_rows`: ‖x‖ within 1e-3
    of 1, then snapped (moved by ≤ √d·2^-(b+1) ≤ 2^-11 in norm for d ≤ 2^16), so ‖x‖‖y‖ < 1.004; and γ_d < 1.004·d·u.
    The true error is thus below 1.01·d·2^-24, and E = d·2^-23 keeps a factor ~2 of slack (it also absorbs the
    float64 rounding of the thresholds built from E); E still bounds the error for any d ≤ 2^22.
    """
    return dim * 2.0**-23


def _check_inputs(train: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Snapped (N, d) train and (Q, d) queries, or ValueError saying what is wrong."""
    train, queries = _check_unit_rows(train, "train"), _check_unit_rows(queries, "queries")
    if queries.device != train.device:
        raise ValueError(f"train features are on {train.device} but queries on {queries.device}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if train.shape[1] != queries.shape[1]:
        raise ValueError(f"train features have d={train.shape[1]} but queries d={queries.shape[1]}")
    return train, queries


def _check_unit_rows(x: Tensor, name: str) -> Tensor:
    if x.ndim != 2 or x.dtype != torch.float32:
        raise ValueError(f"{name} features must be a float32 (N, d) tensor, got {x.dtype} {tuple(x.shape)}")
    norms = x.norm(dim=1)
    if (~torch.isfinite(norms) | (((norms - 1).abs() > 1e-3) & (norms > 0))).any():  # zero rows are allowed
        raise ValueError(f"{name} features must have unit L2 norm rows: pass them through prepare_features first")
    return _snapped(x) if x.device.type == "cpu" else snap_features(x)


def _snapped(x: Tensor) -> Tensor:
    """`snap_features(x)`, computed with one temporary instead of three: at 50,000 × 512 the page faults of three
    fresh 100 MB tensors cost more than the arithmetic. The grid 2^-b is read off `snap_features` itself (2^-j
    survives snapping iff j ≤ b), and round(x · 2^b) / 2^b is the same IEEE arithmetic in place; a test pins it."""
    probe = torch.zeros(64, x.shape[1])
    probe[:, 0] = 2.0 ** -torch.arange(1.0, 65.0)
    scale = 2.0 ** int((snap_features(probe)[:, 0] == probe[:, 0]).sum())
    return x.mul(scale).round_().div_(scale)


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
    """(Q, k) int64 training indices of the k highest float32 inner products per query, highest first."""
    return scored_candidates(train, queries, k, backend)[1]


def scored_candidates(train: Tensor, queries: Tensor, k: int, backend: str) -> tuple[Tensor, Tensor]:
    """The backend's float32 top k: (Q, k) float32 scores, descending, and (Q, k) int64 training indices.

    Every training row not returned scores (in float32) at most the last returned score of its query.
    """
    if backend == "faiss":
        return _faiss_candidates(train, queries, k)
    return _torch_candidates(train, queries, k)


def _torch_candidates(train: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    chunk = max(1, _BLOCK_ELEMENTS // (2 * train.shape[0]))  # float32 (chunk, N) similarity blocks
    scores, indices = [], []
    with _full_float32_matmul(queries.device):
        for start in range(0, queries.shape[0], chunk):
            top = (queries[start:start + chunk] @ train.T).topk(k, dim=1)  # sorted, highest first
            scores.append(top.values)
            indices.append(top.indices)
    return torch.cat(scores), torch.cat(indices)


def _faiss_candidates(train: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    faiss = _import_faiss()
    xb = train.detach().cpu().contiguous().numpy()
    xq = queries.detach().cpu().contiguous().numpy()
    if queries.is_cuda and _faiss_has_gpu(faiss) and k <= _FAISS_GPU_MAX_K:
        resources = faiss.StandardGpuResources()  # kept alive by this frame until the search is done
        index = faiss.GpuIndexFlatIP(resources, xb.shape[1])
    else:
        index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    scores, idx = index.search(xq, k)  # sorted, highest first
    device = queries.device
    return torch.from_numpy(scores).to(device), torch.from_numpy(idx).to(device=device, dtype=torch.int64)


def exact_similarities(train: Tensor, queries: Tensor, candidates: Tensor, mask: Tensor) -> Tensor:
    """(Q, K) exact float64 similarities of each query to its (Q, K) candidates where `mask` is set, -inf elsewhere."""
    if train.device.type != "cpu":
        return _gathered_dots(train, queries, candidates).masked_fill_(~mask, -math.inf)
    train64 = train.to(torch.float64)  # converted once; the sampled matmul reads its rows in place
    sims = torch.full(candidates.shape, -math.inf, dtype=torch.float64)
    tile = max(1, _QUERY_TILE_ELEMENTS // queries.shape[1])
    for start in range(0, queries.shape[0], tile):
        part = slice(start, start + tile)
        positions, dots = _sampled_dots(train64, queries[part].to(torch.float64), candidates[part], mask[part])
        sims[part].view(-1)[positions] = dots
    return sims


def _sampled_dots(train64: Tensor, queries64: Tensor, candidates: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Flat (Q·K) positions of the P masked (query, candidate) pairs and their (P,) float64 dots, by one CSR
    sampled matmul with a row per training row; train64: (N, d), queries64: (Q, d) float64.

    Why: the kernel reads both rows straight from the float64 matrices into a vectorised dot, so nothing of size
    (Q, K, d) is written and read back (gathering those rows was two thirds of the old re-rank). Grouping the pairs
    by training row streams `train64` in order while the tile of queries (`_QUERY_TILE_ELEMENTS`) is reused from
    cache: a third less time than grouping by query, sort included.
    """
    positions = mask.flatten().nonzero().flatten()
    rows = candidates.flatten()[positions]
    rows, order = (rows.int() if train64.shape[0] < 2**31 else rows).sort(stable=True)  # int32 sorts 2.5× faster
    positions = positions[order]
    crow = torch.zeros(train64.shape[0] + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=train64.shape[0]).cumsum(0)
    values = torch.zeros(positions.numel(), dtype=torch.float64)  # beta · values must be 0, not 0 · NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"; this kernel is plain loops
        pattern = torch.sparse_csr_tensor(crow, positions // candidates.shape[1], values, check_invariants=False,
                                          size=(train64.shape[0], queries64.shape[0]))
        return positions, torch.sparse.sampled_addmm(pattern, train64, queries64.T, beta=0.0).values()


def _gathered_dots(train: Tensor, queries: Tensor, candidates: Tensor) -> Tensor:
    """(Q, K) float64 dots by gathering candidate rows in blocks and a batched matmul (CUDA and other devices)."""
    train64 = train.to(torch.float64)  # one conversion up front: gathering float64 rows beats converting per chunk
    chunk = max(1, _RERANK_ELEMENTS // (candidates.shape[1] * train.shape[1]))
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start:start + chunk].to(torch.float64).unsqueeze(2)
        out.append(torch.bmm(train64[candidates[start:start + chunk]], q).squeeze(2))
    return torch.cat(out)


def canonical_order(sims: Tensor, indices: Tensor, k: int) -> Neighbors:
    """The first k of (Q, K) candidates in canonical order, from their exact sims (-inf: ruled out) in backend order.

    The backend's float32 order is already canonical except inside near-tie groups, so only the rows with an exact
    tie or an inversion between neighbours are sorted (-inf − -inf is NaN, so ruled-out tails never count).
    """
    rows = (sims.diff(dim=1) >= 0).any(dim=1).nonzero().flatten()
    if rows.numel():
        fixed = _sort_rows(sims[rows], indices[rows])
        sims, indices = sims.index_copy(0, rows, fixed.sims), indices.index_copy(0, rows, fixed.indices)
    return Neighbors(indices[:, :k], sims[:, :k])


def _sort_rows(sims: Tensor, indices: Tensor) -> Neighbors:
    """(R, K) rows in canonical order: one sort by similarity, then the full two-key sort only for the rows where
    exactly tied similarities came out of index order (distinct similarities leave nothing to break)."""
    order = sims.sort(dim=1, descending=True).indices
    sims, indices = sims.gather(1, order), indices.gather(1, order)
    tied = ((sims.diff(dim=1) == 0) & (indices.diff(dim=1) < 0)).any(dim=1).nonzero().flatten()
    if tied.numel():
        fixed = canonical_topk(sims[tied], indices[tied], indices.shape[1])
        sims, indices = sims.index_copy(0, tied, fixed.sims), indices.index_copy(0, tied, fixed.indices)
    return Neighbors(indices, sims)


def canonical_topk(sims: Tensor, indices: Tensor, k: int) -> Neighbors:
    """The first k of each row ordered by similarity descending, then index ascending (stable sorts make it total)."""
    by_index = indices.argsort(dim=1)
    indices, sims = indices.gather(1, by_index), sims.gather(1, by_index)
    order = sims.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return Neighbors(indices.gather(1, order), sims.gather(1, order))


def _research_unsure(train: Tensor, queries: Tensor, result: Neighbors, unsure: Tensor) -> Neighbors:
    """`result` with the (Q,) `unsure` queries replaced by an exhaustive float64 search: for them a row the backend
    did not propose could belong in the top k."""
    rows = unsure.nonzero().flatten()
    if rows.numel() == 0:
        return result
    exact = exhaustive_neighbors(train, queries[rows], result.indices.shape[1])
    return Neighbors(result.indices.index_copy(0, rows, exact.indices), result.sims.index_copy(0, rows, exact.sims))


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
