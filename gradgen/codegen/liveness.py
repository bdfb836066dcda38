"""Liveness for the scheduler (codegen/schedule.py): which variables exist, how many
references to each are not printed yet, which may alias which, and whose buffers a
statement may overwrite.

A variable whose count (`Liveness.remaining`) is zero after a statement is read by no
later statement; its buffer may then be reused (`dead_buffer`) unless a view of it is
still read. The view maps (`view_bases` and its inverse `views_of`) change in one place,
`_alias`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..ir import Node


class Liveness:
    """The variables of a function (or a loop body) and how many reads of each remain."""

    def __init__(self, keep: frozenset):
        self.keep = keep   # variables never to release or overwrite (the arguments)
        self.var_node: dict[str, Node] = {}
        self.remaining: dict[str, int] = {}   # variable -> references not printed yet
        # variable -> its node, for the arrays a statement may overwrite once they are dead
        # (not an argument, not a view, not of a weak dtype)
        self.buffers: dict[str, Node] = {}
        self.view_bases: dict[str, set] = {}  # view variable -> variables it may alias
        self.views_of: dict[str, dict] = {}   # variable -> the view variables that may alias
        #                                       it (the inverse of view_bases; dicts as
        #                                       ordered sets)
        self.overwritten: set[str] = set()   # variables whose buffers a statement reused
        self.gone: set[int] = set()   # nodes whose variable a write into it took over

    def fork(self, keep: frozenset) -> Liveness:
        """A copy to continue from, for a function whose arguments are `keep` (never
        overwritten: no buffer)."""
        new = Liveness(keep)
        new.var_node = dict(self.var_node)
        new.remaining = dict(self.remaining)
        new.buffers = {k: v for k, v in self.buffers.items() if k not in keep}
        new.view_bases = {k: set(v) for k, v in self.view_bases.items()}
        new.views_of = {k: dict(v) for k, v in self.views_of.items()}
        new.overwritten = set(self.overwritten)
        new.gone = set(self.gone)
        return new

    def define(self, n: Node, name: str, uses: int, view_of: Iterable[str] | None = None,
               buffer: bool = False) -> None:
        """`name` now holds `n`, which `uses` more consumers will read. `view_of`: for a
        view, the variables its statement read (whose buffers it may alias); `buffer`:
        the array is the variable's own, which a statement may overwrite once it is dead
        (not for a variable in `keep`)."""
        self.var_node.setdefault(name, n)
        remaining = self.remaining
        remaining[name] = remaining.get(name, 0) + uses
        if view_of is not None or self.view_bases:
            self._alias(name, view_of)
        if buffer and name not in self.keep:
            self.buffers[name] = n

    def _alias(self, name: str, view_of: Iterable[str] | None) -> None:
        """`name` is a view of the variables `view_of` (None: no view): both view maps
        say so, and no longer what they said of an earlier value of `name`. A view read
        by a view stands for its own bases (it keeps no buffer alive): a chain of views
        keeps a constant set."""
        view_bases, views_of = self.view_bases, self.views_of
        old = view_bases.pop(name, None)
        if old is not None:
            for b in old:
                views_of[b].pop(name, None)
        if view_of is None:
            return
        bases: set = set()
        for r in view_of:
            vb = view_bases.get(r)
            if vb is None:
                bases.add(r)
            else:
                bases |= vb
        view_bases[name] = bases
        for b in bases:
            views_of.setdefault(b, {})[name] = None

    def own(self, n: Node, name: str, uses: int) -> None:
        """`name` holds `n` in a buffer of its own, which `uses` consumers will read (and
        after them, a statement may overwrite)."""
        self.var_node[name] = n
        self.remaining[name] = uses
        self.buffers[name] = n

    def intact(self, name: str) -> bool:
        """Whether variable `name` still holds its value after every statement so far (no
        statement reused its buffer, nor that of an array it may be a view of)."""
        return name not in self.overwritten and not any(
            b in self.overwritten for b in self.view_bases.get(name, ()))

    def share(self, name: str, uses: int) -> None:
        """`uses` more consumers read variable `name` (through a node printed as it)."""
        if name in self.var_node:
            self.remaining[name] += uses

    def read(self, refs: tuple) -> None:
        """A statement is printed that reads these variables (an entry per reference)."""
        remaining = self.remaining
        for name in refs:
            remaining[name] -= 1

    def unread(self, refs: tuple) -> None:
        """Undo `read(refs)` (the statement is printed otherwise)."""
        remaining = self.remaining
        for name in refs:
            remaining[name] += 1

    def read_later(self, name: str) -> bool:
        """Whether a later statement reads variable `name` or a view that may alias it."""
        remaining = self.remaining
        return remaining.get(name, 0) > 0 or \
            any(remaining[v] > 0 for v in self.views_of.get(name, ()))

    def owned_view(self, name: str) -> bool:
        """Whether `name` is a variable holding a view of no variable (of an array its
        own statement computed: the array's only reference) that nothing reads later."""
        return self.view_bases.get(name) == set() and self.remaining.get(name, 0) == 0 \
            and not self.views_of.get(name)

    def dead_buffer(self, args: tuple, shape: tuple, code: dict, inlined: set,
                    fits: Callable[[Node, tuple], bool],
                    unread_later: Callable[[str], bool]) -> str | None:
        """A variable read by one of `args` (a node's arguments, printed as `code` gives,
        those in `inlined` inlined), of this shape, that nothing reads later and that may
        be overwritten: its buffer has the dtype of each argument (`fits(owner, args)`),
        and `unread_later(name)` says the rest of the statement does not read it, nor a
        view of it."""
        buffers, remaining = self.buffers, self.remaining
        for a in args:
            name = code[id(a)][0]
            owner = buffers.get(name)
            if owner is None or owner.shape != shape or remaining[name] > 0 or \
                    id(a) in inlined or a.is_const:
                continue
            views = self.views_of.get(name)
            if views and any(remaining[w] > 0 for w in views):
                continue
            if fits(owner, args) and unread_later(name) and \
                    (not views or all(unread_later(w) for w in views)):
                return name
        return None
