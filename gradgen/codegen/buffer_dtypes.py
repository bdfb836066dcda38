"""Dtype facts for the scheduler (codegen/schedule.py): whether a buffer has the dtype of
a value, so a statement may compute that value into it (`out=`, augmented assignment).

A buffer's dtype covers the inputs its value depends on (`deps`): a value depending on
no other input has its dtype. In a loop body, inputs are compared by the outer values
they stand for, and a carried variable of steady dtype covers every body input no wider
than it; with the float arguments made one dtype at entry (rule `one_dtype_at_entry`),
any float value of those arguments fits a buffer of one of them (`one_dtype_used` then
says a statement relied on it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..ir import Node
from ..ops.dtypes import dtype_sources, input_names_of, weak_of


class BufferDtypes:
    """What the scheduler knows of its values' dtypes."""

    def __init__(self, one_dtype: Mapping[int, str], workspace):
        self.input_names, self.weak = input_names_of(), weak_of()   # (memos bound once)
        # a loop's carried variable (by node id) -> the body inputs whose values never widen its
        # dtype (`_steady_dtypes`); a body input's name -> what it stands for (`_stands_for`)
        self.carried_deps: dict[int, frozenset] = {}
        self.stands_for: dict[str, frozenset] = {}
        # `deps(n)`: what the dtype of `n`'s buffer covers, the inputs it depends on (in a
        # loop body with steady carried values, `_body_deps`; bound, not a method: asked
        # of most statements)
        self.deps: Callable[[Node], frozenset] = self.input_names
        self.ws = workspace   # (its buffers have the float arguments' one dtype)
        # the float arguments (node id -> name) the function makes one dtype at entry when
        # a statement relies on it (`covers`; `one_dtype_used` says whether one did)
        self.one_dtype: Mapping[int, str] = one_dtype
        self.one_dtype_names = frozenset(one_dtype.values())
        self.int_inputs: set[str] = set()   # the names of the Index inputs scheduled so far
        self.one_dtype_used = False

    def continue_from(self, other: BufferDtypes) -> None:
        """Continue from the facts `other` gathered (a function built on another's
        statements)."""
        self.one_dtype_used = other.one_dtype_used
        self.int_inputs = set(other.int_inputs)

    def in_body(self, carried_deps: dict[int, frozenset], stands_for: dict[str, frozenset]
                ) -> None:
        """The facts of a loop body: its carried variables of steady dtype (by node id, with
        the body inputs no wider than each) and what its inputs stand for (by name)."""
        self.carried_deps, self.stands_for = carried_deps, stands_for
        if carried_deps:
            self.deps = self._body_deps

    def _body_deps(self, n: Node) -> frozenset:
        """`deps` in a loop body: for a carried variable of steady dtype, every body input
        no wider than it."""
        return self.carried_deps.get(id(n)) or self.input_names(n)

    def fits(self, owner: Node, args: tuple) -> bool:
        """Whether the buffer of `owner` has the dtype of each of `args` (a node's
        arguments, one of which it usually is: its own dtype depends on the others)."""
        owner_deps, names = None, self.input_names
        for b in args:   # (a loop, not a list and a generator: asked of most statements)
            if b is not owner:
                if owner_deps is None:
                    owner_deps = self.deps(owner)
                if not names(b) <= owner_deps and not self.same(b, owner_deps, owner):
                    return False   # (`same`, its first test inlined)
        return True

    def same(self, n: Node, deps: frozenset, owner: Node) -> bool:
        """Whether `n` has the dtype of `owner`'s buffer, whose dtype covers the inputs
        `deps` (`deps(owner)`): `covers` says so, or with a workspace both have the float
        arguments' one dtype (`Workspace.bind` checked it)."""
        return self.covers(owner, deps, n) or self.ws and self.ws_float(n) and \
            self.ws_float(owner)

    def ws_float(self, n: Node) -> bool:
        """Whether `n` has the float arguments' dtype: with a workspace they have one
        (`Workspace.bind`), so any such buffer may hold any such value."""
        return n.dtype == "float" and not self.weak(n) and bool(dtype_sources(n))

    def covers(self, owner: Node, owner_deps: frozenset, b: Node) -> bool:
        """Whether the buffer of `owner` (whose dtype covers `owner_deps`) has the dtype
        of `b`'s value: `b` depends on no float input it does not, or (with the float
        arguments of one dtype, rule `one_dtype_at_entry`) on no float input but those
        arguments and its own, and `owner` is a float value of one of those arguments.

        The inputs are told apart by their names, as `owner_deps` does (no two inputs of
        a function share one), by `input_names`, which every statement asks for anyway
        (not `dtype_sources`, a walk over every node of the function the first time): an
        input of `b` neither one of those arguments nor `owner`'s must be an Index
        (`int_inputs`: the scheduler saw every input `b` reads), which is no dtype
        source."""
        b_deps = self.input_names(b)
        if b_deps - owner_deps <= self.int_inputs:   # (an Index input is no dtype source)
            return True
        stands = self.stands_for   # (in a loop body: inputs compared by what they stand for)
        if stands and _stand_ins(stands, b_deps) <= _stand_ins(stands, owner_deps):
            return True
        names = self.one_dtype_names
        if not names or owner.dtype != "float" or names.isdisjoint(self.input_names(owner)):
            return False   # (the owner reads none of those arguments)
        if not b_deps - owner_deps - names <= self.int_inputs:
            return False
        self.one_dtype_used = True
        return True


def _stand_ins(stands: Mapping[str, frozenset], names: frozenset) -> frozenset:
    """The inputs `names` of a loop body as the outer values they stand for (a body
    input not in `stands` stands for itself, by its name)."""
    out: frozenset = frozenset()
    for name in names:
        out |= stands.get(name) or frozenset((name,))
    return out
