"""The split-placement weight group over gloo, both ranks in this process (one thread each)."""

from __future__ import annotations

import socket
import threading

import pytest
import torch

from rlkit.rollout.weight_group import broadcast_weights, open_weight_update_group, receive_weights, weight_metadata


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_receiver_gets_every_tensor_with_name_dtype_and_shape():
    sent = [("a.weight", torch.randn(3, 4)), ("b.bias", torch.arange(5, dtype=torch.int64)), ("c", torch.randn(2, 2).to(torch.bfloat16))]
    port, groups = free_port(), {}

    def join(rank: int) -> None:
        groups[rank] = open_weight_update_group("127.0.0.1", port, rank, 2, "gloo", timeout_s=30)

    threads = [threading.Thread(target=join, args=(rank,)) for rank in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    names, dtypes, shapes = weight_metadata(sent)
    assert (names, dtypes, shapes) == (["a.weight", "b.bias", "c"], ["float32", "int64", "bfloat16"], [[3, 4], [5], [2, 2]])

    sender = threading.Thread(target=broadcast_weights, args=(groups[0], sent))
    sender.start()
    received = list(receive_weights(groups[1], names, dtypes, shapes, "cpu"))
    sender.join(timeout=30)
    assert [name for name, _ in received] == names
    for (_, want), (_, got) in zip(sent, received):
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match=r"one of .'nccl', 'gloo'., got 'mpi'"):
        open_weight_update_group("127.0.0.1", 1, 0, 2, "mpi")
    with pytest.raises(ValueError, match="rank 2 is outside the weight update group of size 2"):
        open_weight_update_group("127.0.0.1", 1, 2, 2, "gloo")
    with pytest.raises(ValueError, match="2 names, 1 dtypes and 2 shapes"):
        list(receive_weights(None, ["a", "b"], ["float32"], [[1], [1]], "cpu"))
