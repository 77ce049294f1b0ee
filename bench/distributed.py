"""Training on several processes with torch.distributed (launched by `torchrun`, or `tempbench train
--nproc-per-node N`, which runs torchrun): NCCL on GPUs, gloo on the CPU.

The contract: a run on k processes with a per-process batch of B/k computes what one process computes with batch B.
- Every process draws the same global permutation and the same augmentation parameters for the global batch (one
  shared seeded stream), and renders only its own slice of it.
- Projector outputs are all-gathered *with gradient* (the functional collective `all_gather_single_autograd`, whose
  backward is a summing reduce-scatter; `torch.distributed.nn.functional.all_gather` did the same and is deprecated),
  so every anchor sees the global batch's negatives, and every process computes the strategy on the global batch:
  its loss, and with the gathered indices its per-sample state update (u, τ, momentum), identical on every process.
- Why the gradients come out exact: every process backpropagates the same global loss L; the all-gather's backward
  sums the gradients of a process's own slice over the k processes, k · ∂L/∂z_local, and DistributedDataParallel
  averages the parameter gradients over the k processes, so each parameter receives ∂L/∂θ. Strategy parameters
  (a learnable τ) see the global loss directly, the same on every process, and need no reduction.
- BatchNorm statistics are per process: use `norm="group"` for exact equivalence (SyncBatchNorm needs CUDA).
Rank 0 alone writes checkpoints, rows and tracking; evaluation features are extracted in shards and gathered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed._functional_collectives import all_gather_single_autograd  # current, autograd-aware

from tempbench.provenance import resolve_device


@dataclass(frozen=True)
class World:
    """This process's place: rank among `size` processes (size 1: no torch.distributed at all)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints, rows and tracking."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: collectives are needed."""
        return self.size > 1


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (its environment variables say so)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_world(device: str) -> World:
    """The process group from torchrun's environment (gloo on CPU, NCCL on CUDA), or a single-process World."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "gloo"
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def local_slice(x: Tensor, world: World) -> Tensor:
    """This process's contiguous share of a global batch (the first dimension must divide evenly)."""
    share = x.shape[0] // world.size
    return x[world.rank * share:(world.rank + 1) * share]


def gather_with_grad(x: Tensor, world: World) -> Tensor:
    """(k·b, ...) every process's (b, ...) rows, in rank order, differentiable (see the module docstring)."""
    if not world.distributed:
        return x
    return all_gather_single_autograd(x.contiguous(), gather_dim=0, group=dist.group.WORLD)


def gather_rows(x: Tensor, world: World) -> Tensor:
    """Every process's rows (counts may differ by process), concatenated in rank order, without gradient."""
    if not world.distributed:
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:int(c.item())] for p, c in zip(parts, counts)])


def shard_range(n: int, world: World) -> tuple[int, int]:
    """[start, stop) of this process's contiguous share of n items (the last processes get one fewer)."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (world.rank < extra)


def barrier(world: World) -> None:
    """Wait for every process (a no-op on one)."""
    if world.distributed:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def process_device(device: str, world: World) -> torch.device:
    """The device of this process for a run's `device` setting: under torchrun each process takes the GPU of its
    local rank."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world.distributed:
        resolved = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(resolved)
    return resolved


def check_world(batch_size: int, norm: str, world: World, device: torch.device) -> None:
    """The global batch must split evenly over the processes; SyncBatchNorm exists on CUDA only."""
    if batch_size % world.size:
        raise ValueError(f"batch_size {batch_size} (the global batch) must divide evenly over the {world.size} "
                         f"processes")
    if norm == "sync_batch" and device.type != "cuda":
        raise ValueError("norm='sync_batch' needs CUDA (SyncBatchNorm); on the CPU use norm='group' for a run that "
                         "is exact across processes, or 'batch' for per-process statistics")


def wrap_model(model: torch.nn.Module, norm: str, world: World) -> torch.nn.Module:
    """The model a step calls: itself, or under torchrun its DistributedDataParallel wrapper (SyncBatchNorm first
    with norm='sync_batch'). Checkpoints and evaluation keep using the unwrapped model."""
    if not world.distributed:
        return model
    if norm == "sync_batch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [world.local_rank] if next(model.parameters()).is_cuda else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
