"""A bounded LRU cache of style targets, so a repeated style skips its feature extraction.

The style image's Gram matrices depend only on the style pixels, their size, the layers, the
pooling, the network and (with colour control or masks) on what recoloured or masked them. The
caller names the style input (e.g. the sha256 of its bytes and what it was resized to); the
engine adds everything about the computation (see ``nst.stylize``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import torch


class StyleCache:
    """Least-recently-used map from a style-target key to ``{layer name: Gram matrix}``.

    Args:
        max_entries: entries kept (one per style image, level and configuration); a VGG19
            entry for the five default style layers is about 2.4 MB of Gram matrices.
            0 disables caching.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, dict[str, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> dict[str, torch.Tensor] | None:
        """The cached Gram matrices for ``key`` (marking it recently used), or ``None``; counts a hit or a miss."""
        grams = self._entries.get(key)
        if grams is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return grams

    def put(self, key: Hashable, grams: dict[str, torch.Tensor]) -> None:
        """Store ``grams`` under ``key``, evicting the least recently used entry when full."""
        if self.max_entries == 0:
            return
        self._entries[key] = grams
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
