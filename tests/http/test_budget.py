"""The worker's memory budget on CUDA (issue 23), on this CPU machine: the ``torch.cuda`` calls it
reads are replaced by fakes, the CPU rule is the real one; and a CUDA out-of-memory error's answer."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from nst_http import budget
from nst_http.budget import CUDA_RESERVE_BYTES, CUDA_RESERVE_SHARE, Budget, measure_budget, release_cached_memory
from nst_http.errors import from_engine_error, is_out_of_memory

MIB, GIB = 2**20, 2**30
CUDA1 = torch.device("cuda:1")


class FakeGpu:
    """What ``torch.cuda`` reports about the worker's GPU: bytes the worker has allocated and
    reserved, and what the driver says is free of the total, on ``device`` alone (the fakes
    fail for any other device: the budget must read its own GPU's)."""

    def __init__(self, device: torch.device, *, allocated: int, reserved: int, free: int, total: int) -> None:
        self.device, self.allocated, self.reserved, self.free, self.total = device, allocated, reserved, free, total

    def _own(self, device: Any) -> None:
        assert torch.device(device) == self.device, device

    def memory_allocated(self, device: Any = None) -> int:
        self._own(device)
        return self.allocated

    def memory_reserved(self, device: Any = None) -> int:
        self._own(device)
        return self.reserved

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        self._own(device)
        return self.free, self.total

    def get_device_properties(self, device: Any = None) -> Any:
        raise AssertionError("the budget comes from the free memory, not from the GPU's total")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("memory_allocated", "memory_reserved", "mem_get_info", "get_device_properties"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))


def test_cuda_budget_is_what_the_gpu_has_free_less_the_reserve(monkeypatch) -> None:
    # An 80 GB GPU on which the worker holds its weights (550 MiB allocated, 600 reserved) and
    # another process 10 GiB: 69 GiB free.
    gpu = FakeGpu(CUDA1, allocated=550 * MIB, reserved=600 * MIB, free=69 * GIB, total=80 * GIB)
    gpu.install(monkeypatch)
    got = measure_budget(None, CUDA1)
    available = 69 * GIB + 50 * MIB  # free, and the allocator's cached blocks the worker holds unused
    working = int(available - CUDA_RESERVE_BYTES - CUDA_RESERVE_SHARE * available)
    assert got == Budget(total=550 * MIB + working, baseline=550 * MIB)
    assert got.working == working
    # The other process's 10 GiB stay its own: 90% of the GPU (the old rule) would have counted them.
    assert got.total < 0.9 * 80 * GIB - 10 * GIB


def test_cuda_budget_follows_each_gpus_own_free_memory(monkeypatch) -> None:
    busy = FakeGpu(CUDA1, allocated=500 * MIB, reserved=500 * MIB, free=4 * GIB, total=80 * GIB)
    busy.install(monkeypatch)
    small = measure_budget(None, CUDA1)
    idle = FakeGpu(CUDA1, allocated=500 * MIB, reserved=500 * MIB, free=79 * GIB, total=80 * GIB)
    idle.install(monkeypatch)
    large = measure_budget(None, CUDA1)
    assert 0 < small.working < 4 * GIB - CUDA_RESERVE_BYTES < large.working < 79 * GIB


def test_cuda_budget_is_never_below_what_the_worker_holds(monkeypatch) -> None:
    FakeGpu(CUDA1, allocated=500 * MIB, reserved=500 * MIB, free=CUDA_RESERVE_BYTES // 2, total=16 * GIB).install(monkeypatch)
    got = measure_budget(None, CUDA1)
    assert got == Budget(total=500 * MIB, baseline=500 * MIB) and got.working == 0


def test_memory_budget_mb_overrides_the_cuda_rule(monkeypatch) -> None:
    FakeGpu(CUDA1, allocated=500 * MIB, reserved=500 * MIB, free=69 * GIB, total=80 * GIB).install(monkeypatch)
    got = measure_budget(20_000, CUDA1)
    assert got == Budget(total=20_000 * MIB, baseline=500 * MIB)


def test_cpu_budget_is_a_share_of_the_ram(monkeypatch) -> None:
    FakeGpu(CUDA1, allocated=0, reserved=0, free=0, total=0).install(monkeypatch)  # never read on the CPU
    got = measure_budget(None, torch.device("cpu"))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert got.total == int(budget.CPU_SHARE * ram) and 0 < got.baseline <= budget.peak_rss()
    assert measure_budget(1024, torch.device("cpu")).total == 1024 * MIB


@pytest.mark.parametrize("available", [False, True])
def test_release_cached_memory_empties_the_cache_only_with_cuda(monkeypatch, available: bool) -> None:
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    release_cached_memory()
    assert emptied == ([True] if available else [])


@pytest.mark.parametrize("exc", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
], ids=["OutOfMemoryError", "RuntimeError", "cudaMalloc"])
def test_cuda_out_of_memory_is_a_507_naming_the_output_size(exc: Exception) -> None:
    assert is_out_of_memory(exc)
    answer = from_engine_error(exc, (1024, 768))
    assert answer is not None
    assert (answer.status, answer.code, answer.field) == (507, "out_of_memory", "params.image_size")
    assert "1024x768 px" in answer.message
    assert "params.image_size" in answer.message and "params.tile_size" in answer.message


@pytest.mark.parametrize("exc", [RuntimeError("boom"), MemoryError(), ValueError("CUDA out of memory")])
def test_other_failures_are_not_out_of_memory(exc: Exception) -> None:
    assert not is_out_of_memory(exc)
    assert from_engine_error(exc, (64, 48)) is None
