"""A bounded LRU cache of style targets, so a repeated style skips its feature extraction.

The style image's Gram matrices depend only on the style pixels, their size, the layers, the
pooling, the network and (with colour control or masks) on what recoloured or masked them. The
caller names the style input (e.g. the sha256 of its bytes and what it was resized to) in a
:class:`StyleTargets`, one per run; the engine adds everything about the computation
(:func:`nst.objective.build_objective`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch

#: ``{layer name: target statistic}`` of one style image (Gram matrices: ``(1, C, C)``, or
#: ``(R, C, C)`` region-guided).
Targets = dict[str, torch.Tensor]


class StyleCache:
    """Least-recently-used map from a style-target key to ``{layer name: Gram matrix}``.

    Args:
        max_entries: entries kept (one per style image, level and configuration); a VGG19
            entry for the five default style layers is about 2.4 MB of Gram matrices.
            0 disables caching.

    Raises:
        ValueError: ``max_entries`` below 0.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Targets] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Targets | None:
        """The cached Gram matrices for ``key`` (marking it recently used), or ``None``; counts a hit or a miss."""
        grams = self._entries.get(key)
        if grams is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return grams

    def put(self, key: Hashable, grams: Targets) -> None:
        """Store ``grams`` under ``key``, evicting the least recently used entry when full."""
        if self.max_entries == 0:
            return
        self._entries[key] = grams
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class StyleTargets:
    """One run's view of a :class:`StyleCache`: the style images' names, and the lookups this
    run made (what :attr:`nst.records.Stylized.cache` reports).

    Args:
        cache: the cache shared between runs.
        keys: one hashable per style image naming everything its targets depend on besides
            the computation itself: the style input and, with a ``color_control`` of
            :data:`nst.options.STYLE_RECOLOURING`, the content image, and with masks, both masks.
    """

    def __init__(self, cache: StyleCache, keys: Sequence[Hashable]) -> None:
        self.cache, self.keys = cache, list(keys)
        self.hits = 0
        self.misses = 0
        """This run's lookups (one per style image and level built), hits and misses."""

    def get(self, index: int, computation: tuple[Hashable, ...], compute: Callable[[], Targets]) -> Targets:
        """The targets of style image ``index`` for ``computation`` (what the engine's
        computation adds to the key: sizes, layers, pooling, network, ...): from the cache, or
        made by ``compute()`` and kept.

        Raises:
            IndexError: ``index`` beyond the keys given.
        """
        key = (self.keys[index], *computation)
        cached = self.cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        made = compute()
        self.cache.put(key, made)
        return made
