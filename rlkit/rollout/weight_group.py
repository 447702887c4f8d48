"""A process group of its own for pushing weights from the learner to rollout engines (split placement).

Rank 0 is the learner's rank 0 (the sender); engine workers take ranks `rank_offset + worker rank`.
The group is built from a TCPStore and a backend process group directly, so it is independent of
any default `torch.distributed` group either side already has (vLLM's workers have one, a DeepSpeed
learner has one). Backends: "nccl" between GPUs, "gloo" on CPU.

Both sides must enter each call together: the sender calls `broadcast_weights` while every engine
receives (`VLLMEngine.receive_weights`), each with the same names, dtypes and shapes in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

import torch

BACKENDS = ("nccl", "gloo")


def open_weight_update_group(
    master_address: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float = 600.0
) -> torch.distributed.ProcessGroup:
    """Join the group; returns once all `world_size` ranks have joined (rank 0 hosts the store)."""
    if backend not in BACKENDS:
        raise ValueError(f"weight update backend must be one of {BACKENDS}, got {backend!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside the weight update group of size {world_size}")
    timeout = timedelta(seconds=timeout_s)
    store = torch.distributed.TCPStore(master_address, port, world_size, is_master=rank == 0, timeout=timeout)
    store = torch.distributed.PrefixStore("rlkit_weight_update", store)
    if backend == "gloo":
        return torch.distributed.ProcessGroupGloo(store, rank, world_size, timeout)
    if not hasattr(torch.distributed, "ProcessGroupNCCL") or not torch.cuda.is_available():
        raise RuntimeError("weight update backend 'nccl' needs a CUDA build of torch and a GPU; use 'gloo' on CPU")
    options = torch.distributed.ProcessGroupNCCL.Options()
    options._timeout = timeout
    return torch.distributed.ProcessGroupNCCL(store, rank, world_size, options)


def weight_metadata(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> tuple[list[str], list[str], list[list[int]]]:
    """(names, dtype names, shapes): what a receiver needs to allocate each tensor before the broadcast."""
    names, dtypes, shapes = [], [], []
    for name, tensor in named_tensors:
        names.append(name)
        dtypes.append(str(tensor.dtype).removeprefix("torch."))
        shapes.append(list(tensor.shape))
    return names, dtypes, shapes


def broadcast_weights(group: torch.distributed.ProcessGroup, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Sender side (rank 0): broadcast each tensor in order."""
    for _, tensor in named_tensors:
        group.broadcast(tensor.detach().contiguous(), 0).wait()


def receive_weights(
    group: torch.distributed.ProcessGroup,
    names: list[str],
    dtypes: list[str],
    shapes: list[list[int]],
    device: torch.device | str,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Receiver side: yields each (name, tensor) as it arrives, so a loader can consume one at a time."""
    if not len(names) == len(dtypes) == len(shapes):
        raise ValueError(f"receive_weights: {len(names)} names, {len(dtypes)} dtypes and {len(shapes)} shapes differ in length")
    for name, dtype, shape in zip(names, dtypes, shapes):
        tensor = torch.empty(shape, dtype=getattr(torch, str(dtype).removeprefix("torch.")), device=device)
        group.broadcast(tensor, 0).wait()
        yield name, tensor
