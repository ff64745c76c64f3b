"""Several processes, one meta-batch: what :class:`~metalearn_nlp.training.Trainer` needs from ``torch.distributed``.

Meta-training parallelises over the episodes of a meta-batch. Every process
(rank) draws the *same* episodes from the same seeded sampler, keeps the
episodes ``i`` with ``i % world_size == rank``, and back-propagates
``loss / meta_batch_size`` on them; the gradients are then summed over the
ranks with ``all_reduce``. The sum is the gradient of the global meta-batch,
so every rank takes the same optimiser step and the weights stay identical.
Each episode's dropout is seeded by ``(seed, step, episode)``, not by the
process that runs it, so the result does not depend on the number of
processes (up to the order of floating-point additions). Dev episodes are
shared out the same way and their entity counts summed, so all ranks agree
on the dev F1 and on early stopping. Only rank 0 shows a progress bar and
writes checkpoints.

Launch with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``)::

    # one machine, 4 GPUs (NCCL)
    torchrun --standalone --nproc_per_node 4 -m metalearn_nlp.cli train --config train.json
    # two machines, 8 GPUs each: run on both, with the first machine's address
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint first-machine:29500 -m metalearn_nlp.cli train --config train.json
    # two CPU processes (gloo), as the test does
    torchrun --standalone --nproc_per_node 2 -m metalearn_nlp.cli train --config train.json --device cpu

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["all_reduce_gradients", "all_reduce_sum", "broadcast_module", "init_distributed", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless a process group is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` set up; a no-op in a single process.

    Arguments:
        backend: ``"gloo"`` or ``"nccl"`` (None: NCCL when CUDA is available, else gloo).

    Returns:
        ``(rank, world_size)``. With CUDA, also selects the GPU ``LOCAL_RANK``.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return rank_and_world()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return rank_and_world()


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (a no-op in one process)."""
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def all_reduce_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in one flat buffer (a missing gradient counts as 0)."""
    import torch.distributed as dist

    if rank_and_world()[1] == 1 or not parameters:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in parameters:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum a few numbers over the ranks (float64; identity in one process)."""
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
