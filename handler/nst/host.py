"""Reading numbers back to the host, the one thing in an optimization loop that stalls a GPU.

A CUDA device runs the work the host queues; a value the host reads (``float(t)``, ``t.item()``,
``t.tolist()``, ``if t > 0``) makes the host wait until everything queued before it has run,
and the device then idles until the host queues more. ``torch.optim.LBFGS`` reads one value for
every stored pair in both loops of its two-loop recursion (about ``2 x history + 8`` reads per
iteration); the engine's loop reads once per iteration, through :func:`to_host`
(:mod:`nst.lbfgs`).

:class:`HostReads` counts such reads on any device, the CPU included, so that a test on a
machine without a GPU holds the count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
#: Operators whose result the host must wait for: a scalar read, and outputs whose shape
#: depends on the data (the device must finish to say how many elements there are).
_READS = frozenset({
    _aten._local_scalar_dense.default, _aten.nonzero.default, _aten._unique2.default, _aten.unique_dim.default,
    _aten.masked_select.default, _aten.equal.default,
})


def to_host(values: torch.Tensor) -> list[float]:
    """The elements of ``values`` (any shape, any device) as Python floats, in one read: one
    copy to the host (a device sync on CUDA) however many there are.

    On the CPU the copy is not needed, but it is made, so that :class:`HostReads` sees the read
    there too.
    """
    return values.detach().to("cpu", copy=True).reshape(-1).tolist()


class HostReads(TorchDispatchMode):
    """Counts, while active, the operations that make the host wait for a device: scalar reads
    (``aten._local_scalar_dense``, which ``float()``, ``.item()`` and Python comparisons of a
    tensor call), data-dependent shapes (``nonzero``, ``unique``, ``masked_select``, ``equal``),
    and copies to the CPU of a tensor (``.to("cpu")``, ``.cpu()``, :func:`to_host`). On a CPU
    these cost nothing; on a GPU each is a synchronization.

    ``.cpu()`` and ``.tolist()`` of a tensor already on the CPU do not reach PyTorch's
    dispatcher and are not counted: on a CPU run they read nothing from a device.

    Example:
        >>> with HostReads() as reads:
        ...     _ = float(torch.ones(3).sum())
        >>> reads.count
        1
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.ops: list[str] = []
        """The name of each counted operation, in order."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _READS or (func is _aten._to_copy.default and _to_cpu(kwargs.get("device"))):
            self.count += 1
            self.ops.append(str(func))
        return func(*args, **kwargs)


def _to_cpu(device: Any) -> bool:
    return device is not None and torch.device(device).type == "cpu"
