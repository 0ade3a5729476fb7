"""Data-parallel training under ``torchrun``: the process group, the all-gather of thetas."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Distributed", "setup_distributed", "gather_batch"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run."""

    rank: int
    world: int

    def slice_bounds(self, batch_size: int) -> np.ndarray:
        """Where each rank's contiguous slice of a global batch of ``batch_size`` starts."""
        return np.linspace(0, batch_size, self.world + 1).round().astype(int)

    def broadcast_seed(self, seed: int, device: torch.device) -> int:
        """Rank 0's seed on every rank: one batch order and one noise stream everywhere."""
        import torch.distributed as dist

        shared = torch.tensor([seed], dtype=torch.int64, device=device)
        dist.broadcast(shared, 0)
        return int(shared.item())

    def reduce_totals(self, totals: torch.Tensor) -> torch.Tensor:
        """An epoch's summed terms (reconstruction, prior KL, pair KL, InfoNCE, loss) over all
        ranks: per-tuple sums add up; InfoNCE is already global on every rank."""
        import torch.distributed as dist

        local = totals.clone()
        dist.all_reduce(local)
        return torch.cat([local[:3], totals[3:4], local[4:5] / self.world])


def setup_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join (or start, from torchrun's environment) the process group; on CUDA each rank
    takes its local GPU.  Returns this rank's place and device."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("distributed=True: this torch build has no torch.distributed")
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise RuntimeError(
                "distributed=True needs a process group: run under torchrun "
                "(torchrun --nproc_per_node=N your_script.py) or call "
                "torch.distributed.init_process_group first")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count()))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size()), device


class _GatherWithGradient(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for this rank's part.

    Written out rather than ``torch.distributed.nn.functional.all_gather`` (whose backward
    is an all-to-all off NCCL): with that one, 2 gloo ranks gave InfoNCE gradients that
    disagreed with the single-process computation (tests/slow/test_distributed.py), although a
    toy case agreed; the cause is not pinned down.  One ``all_reduce`` of a contiguous
    tensor is simple and matches.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_batch(theta: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
    """``(V, B, K)`` thetas of the whole global batch from every rank's ``(V, b, K)`` slice,
    gradients flowing to every rank."""
    sizes = np.diff(bounds)
    width = int(sizes.max())
    padded = torch.zeros(theta.shape[0], width, theta.shape[2], device=theta.device, dtype=theta.dtype)
    padded = padded.index_copy(1, torch.arange(theta.shape[1], device=theta.device), theta) \
        if theta.shape[1] else padded
    parts = _GatherWithGradient.apply(padded)  # (world, V, width, K)
    return torch.cat([parts[r, :, :size] for r, size in enumerate(sizes)], dim=1)
