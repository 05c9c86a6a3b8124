"""Sets of row-group indices held as ranges, so that planning and metadata cost what the
ranges cost, not what the target is: a dataset of 10,000,000 row groups with everything
finished is one range, and "what is left to generate" is computed without listing it."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")


class IndexRanges:
    """A set of non-negative ints as sorted, disjoint, inclusive ``[start, end]`` ranges.

    Behaves like a read-only sequence of sorted ints for iteration, ``len``, ``in`` and
    truth; ``add`` inserts one index.
    """

    __slots__ = ("_starts", "_ends", "_len")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()):
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in sorted(tuple(r) for r in ranges):
            if start > end:
                continue
            if self._ends and start <= self._ends[-1] + 1:
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)
        self._len = sum(e - s + 1 for s, e in zip(self._starts, self._ends))

    @classmethod
    def span(cls, start: int, stop: int) -> IndexRanges:
        """``start <= i < stop``."""
        return cls([(start, stop - 1)])

    @classmethod
    def of(cls, indices: Iterable[int]) -> IndexRanges:
        return cls((i, i) for i in indices)

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        at = bisect.bisect_right(self._starts, index) - 1
        return at >= 0 and index <= self._ends[at]

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends):
            yield from range(start, end + 1)

    def __reversed__(self) -> Iterator[int]:
        for start, end in zip(reversed(self._starts), reversed(self._ends)):
            yield from range(end, start - 1, -1)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IndexRanges):
            return self._starts == other._starts and self._ends == other._ends
        if isinstance(other, (tuple, list)):
            return len(other) == self._len and list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"IndexRanges({self.ranges()})"

    def ranges(self) -> list[list[int]]:
        return [[s, e] for s, e in zip(self._starts, self._ends)]

    def first(self) -> int | None:
        return self._starts[0] if self._starts else None

    def last(self) -> int | None:
        return self._ends[-1] if self._ends else None

    def add(self, index: int) -> None:
        if index in self:
            return
        at = bisect.bisect_right(self._starts, index)
        joins_left = at > 0 and self._ends[at - 1] == index - 1
        joins_right = at < len(self._starts) and self._starts[at] == index + 1
        if joins_left and joins_right:
            self._ends[at - 1] = self._ends[at]
            del self._starts[at], self._ends[at]
        elif joins_left:
            self._ends[at - 1] = index
        elif joins_right:
            self._starts[at] = index
        else:
            self._starts.insert(at, index)
            self._ends.insert(at, index)
        self._len += 1

    def intersection(self, other: IndexRanges) -> IndexRanges:
        pieces = []
        i = j = 0
        while i < len(self._starts) and j < len(other._starts):
            start, end = max(self._starts[i], other._starts[j]), min(self._ends[i], other._ends[j])
            if start <= end:
                pieces.append((start, end))
            if self._ends[i] < other._ends[j]:
                i += 1
            else:
                j += 1
        return IndexRanges(pieces)

    def difference(self, other: IndexRanges) -> IndexRanges:
        pieces = []
        j = 0
        for start, end in zip(self._starts, self._ends):
            while j < len(other._starts) and other._ends[j] < start:
                j += 1
            k = j
            while start <= end and k < len(other._starts) and other._starts[k] <= end:
                if other._starts[k] > start:
                    pieces.append((start, other._starts[k] - 1))
                start = max(start, other._ends[k] + 1)
                k += 1
            if start <= end:
                pieces.append((start, end))
        return IndexRanges(pieces)


class RangeMap(Mapping[int, V], Generic[V]):
    """Indices held as ranges, each mapped to ``regular`` except the few listed in ``irregular``
    (e.g. finished row groups: all full-size but a shorter last one)."""

    def __init__(self, indices: IndexRanges, regular: V, irregular: Mapping[int, V] | None = None):
        self.irregular: dict[int, V] = dict(irregular or {})
        outside = [i for i in self.irregular if i not in indices]
        self.indices = IndexRanges([*indices.ranges(), *((i, i) for i in outside)]) if outside else indices
        self.regular = regular

    def __getitem__(self, index: int) -> V:
        if index in self.irregular:
            return self.irregular[index]
        if index in self.indices:
            return self.regular
        raise KeyError(index)

    def __setitem__(self, index: int, value: V) -> None:
        self.indices.add(index)
        if value == self.regular:
            self.irregular.pop(index, None)
        else:
            self.irregular[index] = value

    def __contains__(self, index: object) -> bool:
        return index in self.indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
