"""In-place statement forms for the scheduler (codegen/schedule.py): a chain of
elementwise steps computed in one buffer (`out=`, augmented assignment), a write into the
array it writes (`H_2 = H` then `H_2[t] = h`), a sum added into a carried variable
(`dW += x * g`), a new array taken from the workspace.

A buffer is reused when its variable is dead (`Liveness.dead_buffer`) and its dtype is
certain to be the value's (`BufferDtypes`); each form says which buffer it reused
(`_State.reused`, `Liveness.overwritten`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..dims import fmt_shape
from ..ir import Node
from ..ir import memo as ir_memo
from ..ops._emit import unit_fraction
from ..ops.control import WIDER_WRITES
from .naming import temp_name

if TYPE_CHECKING:
    from .schedule import _State

MAX_LINE = 88   # ruff format's width: a longer statement (before its comment) is split


def chain(st: _State, n: Node) -> bool:
    """Whether `in_place` would print `n` as a chain of steps (an inlined argument of
    its shape computed by a ufunc too)."""
    ufunc, shape = st.ufunc, n.shape
    return bool(shape) and n.op in ufunc and any(
        id(a) in st.inlined and a.op in ufunc and a.shape == shape for a in n.args)


def in_place(st: _State, n: Node, target: str, refs: dict, stmt_refs: tuple,
             need_buffer: bool = False) -> list[str] | TooLong | None:
    """Statements computing `n` into one buffer, or None when that would not help
    (with `need_buffer`: when no dead variable's buffer can hold it); a `TooLong` when
    the line into a dead buffer is too long, but would fit with the arguments of its
    bottom step spilled (`_Scheduler._spill_for`)."""
    shape, ufunc = n.shape, st.ufunc
    if not shape or n.op not in ufunc:
        return None
    inlined, spine, bottom, dtypes = st.inlined, [n], n, st.dtypes
    while True:
        for a in bottom.args:
            if id(a) in inlined and a.op in ufunc and a.shape == shape:
                spine.append(a)
                bottom = a
                break
        else:
            break
    if len(spine) > 1 and dtypes.carried_deps and (added := _carried_add(   # `dW += x * g`
            st, n, _dead_buffer(st, n.args, shape, lambda name: True), target)):
        return added
    fresh = _fresh_bottom(st, spine, shape)   # `h = x @ W; h += b`
    if fresh is not None:
        spine.append(fresh)
        bottom = fresh
    bottom_args = bottom.args
    # Only a variable that no later step of this statement reads may be overwritten.
    def unread_later(name):   # no reference to `name` outside `bottom`'s arguments
        k = stmt_refs.count(name)
        for a in bottom_args:
            k -= refs[id(a)].count(name)
        return k == 0

    buf = None if fresh is not None else _dead_buffer(st, bottom_args, shape, unread_later)
    if buf is None and (len(spine) < 2 or need_buffer):
        return None
    alloc = st.live.var_node[buf] if buf else bottom
    # Every step's inputs among the buffer's (so is its dtype): `_dead_buffer` checked
    # `bottom`'s arguments (or it is the buffer), the steps above are left (a fresh
    # bottom's, `_fresh_bottom` checked).
    steps = spine[:-1] if alloc is bottom or alloc is st.live.buffers[buf] else spine
    if steps and fresh is None:
        alloc_deps = dtypes.deps(alloc)
        if not dtypes.input_names(n) <= alloc_deps and not all(
                dtypes.same(s, alloc_deps, alloc) for s in steps):
            return None
    if buf is None and dtypes.weak(alloc):   # a buffer is never weak (see `buffers`)
        return None
    code = st.p.code
    if len(spine) == 1 and (added := _carried_add(st, n, buf, target)):   # `dW += g`
        return added
    if buf:   # the buffer keeps its name in a comment: one buffer, one name in view
        into = call_into(st, bottom, buf)
        if (width := len(target) + len(into) + 7) > MAX_LINE:   # (`out=` made it
            return _too_long(spine, inlined, width - MAX_LINE)   # too long)
        st.live.overwritten.add(buf)
        st.reused[target] = buf
        lines = [f"{target} = {into}{shape_comment(n)}"
                 + ("" if buf == target else f"; reuses {buf}'s buffer")]
    else:
        into = workspace_into(st, bottom, target, n) if st.ws else None
        lines = [f"{target} = {into or code[id(bottom)][0]}{shape_comment(n)}"]
    child = bottom
    for k in range(len(spine) - 2, -1, -1):   # the steps, bottom-up
        s = spine[k]
        s_args = s.args
        if len(s_args) == 1:
            lines.append(st.p.into(st.ufunc[s.op], [target], target))
        else:
            i = 0 if s_args[0] is child else 1
            o = s_args[1 - i]
            if id(o) in inlined and o.op in ufunc and o.shape == shape:
                lines += _operand_in_place(st, s, o, spine[:k], refs)
            lines.append(_step(st, s, i, target))
        child = s
    return lines


def write_into(st: _State, n: Node, target: str) -> list[str] | None:
    """`n` (an op with a `write` rule: argument 0 with entries written) computed in the
    buffer of argument 0 when that is a variable of the function that dies here:
    `H_2 = H` and the writes, not a copy. None when it is not."""
    write = st.ops.write.get(n.op)
    if write is None or not (st.ufunc or st.p.owned_writes):   # (a target that
        return None                                                  # cannot write)
    a = n.args[0]
    if id(a) in st.inlined and a.shape and not st.ops.is_view(a) and \
            id(a) not in st.p.scalars:   # a new array spelled here (`np.empty(...)`)
        into = workspace_into(st, a, target, n) if st.ws else None
        return [f"{target} = {into or st.p.code[id(a)][0]}", *write(st.p, n, target)]
    buf = _dead_buffer(st, n.args[:1], n.shape, lambda name: True)
    if buf is None:
        return None
    if ir_memo().get(WIDER_WRITES, {}).get(id(n)) is n:
        # (row gradients into saved states' rows that do not read Wy: the float arguments
        # one dtype, else NumPy rounds a wider value to the buffer's; passes/rows.py)
        st.dtypes.one_dtype_used = True
    if buf == target:   # the array was made under the name of this write
        return list(write(st.p, n, target))
    st.live.overwritten.add(buf)
    st.reused[target] = buf
    return [f"{target} = {buf}  # reuses {buf}'s buffer", *write(st.p, n, target)]


def _augmented_into(st: _State, n: Node, buf: str, target: str) -> str | None:
    """`target OP= other` for `n` (of two arguments), one of which is in `buf`, or
    None when `n` has no such form."""
    if len(n.args) != 2:
        return None
    code = st.p.code
    for i in (0, 1):
        if code[id(n.args[i])][0] == buf and (i == 0 or n.op in st.ops.commutative):
            if code[id(n.args[1 - i])][0] == buf:
                return None
            return st.p.augmented(target, st.ufunc[n.op], st.p.arg(n, 1 - i, 0))
    return None


def _operand_in_place(st: _State, s: Node, o: Node, later: list, refs: dict) -> list[str]:
    """Compute the other operand `o` of step `s` (like `1 - Z`; inlined, of the same
    shape, with a ufunc) into the buffer of a variable that dies here, so the step
    allocates nothing: `Z_diff = np.subtract(1, Z, out=Z)`."""
    buf = _dead_buffer(
        st, o.args, s.shape,
        lambda name: not any(name in refs[id(a)] for t in later for a in t.args))
    if buf is None:
        return []
    into = call_into(st, o, buf)
    base = temp_name(o, st.names)
    if len(base) + len(into) + 9 > MAX_LINE:   # (a numbered name)
        return []   # `out=` would make it too long: computed as it is instead
    name = st.namer.fresh(base)
    line = f"{name} = {into}  # reuses {buf}'s buffer"
    st.live.overwritten.add(buf)
    st.p.set_name(o, name)
    st.temps.append(name)
    return [line]


def _step(st: _State, s: Node, i: int, target: str) -> str:
    """`s` (of two arguments) computed in place, where its argument `i` is already in
    `target`."""
    uf = st.ufunc[s.op]
    other = s.args[1 - i]
    if s.op in st.ops.product and other.is_const and \
            (u := unit_fraction(other)) is not None:   # as the printer spells it: x / q
        num, den = u
        text, _ = st.p.scalar(den * num)
        return st.p.augmented(target, st.ops.divide, text) or \
            st.p.into(st.ops.divide, [target, text], target)
    other_code = st.p.arg(s, 1 - i, 0)   # never parenthesised
    if i == 0 or s.op in st.ops.commutative:   # commutes, or target on the left
        line = st.p.augmented(target, uf, other_code)
        if line is not None:
            return line
    args = [target, other_code] if i == 0 else [other_code, target]
    line = st.p.into(uf, args, target)   # (a helper's result is the array: a new
    return f"{target} = {line}" if uf[0] == "_" else line   # one for a sparse product)


class TooLong(NamedTuple):
    """Why `in_place` declined: its line into a dead buffer is `excess` columns too
    long, which spilling the arguments of the bottom of its steps (`spine`, bottom last)
    would mend."""

    spine: list
    excess: int


def _too_long(spine: list, inlined: set, excess: int) -> TooLong | None:
    """What `in_place` returns for its steps (`spine`, bottom last) whose line into a dead
    buffer is `excess` columns too long: a `TooLong` where the bottom step has an inlined
    argument (spilled, it is a variable as large as the temporary it was, released after
    the statement; a broadcast one, `dz.sum(axis=1)[:, None] / s`, is smaller than the
    full-size temporary its spill saves), else None."""
    if any(id(a) in inlined and not a.is_const for a in spine[-1].args):
        return TooLong(spine, excess)
    return None


def workspace_into(st: _State, n: Node, target: str, top: Node | None = None,
                   first_line: bool = False) -> str | None:
    """The code computing `n` into the workspace's buffer for `target`
    (`np.matmul(X, V, out=ws("Q", N, M))`, `ws.zeros("dx", N)`), or None where it is
    not taken from the workspace: no workspace, a number, a view, an integer or weak
    dtype (the buffers have the float arguments' one dtype), an op with no form into a
    buffer (`OpDef.ufunc`, `OpDef.into`, `OpDef.buffer`), or a node (or `top`, the node
    the statement computes) whose buffer reaches a result of the function
    (`Printer.workspace_exclude`). `first_line`: the new buffer a statement op's lines
    start from (a `scatter`'s zeros)."""
    p, ops = st.p, st.ops
    if not st.ws or not n.shape or not st.dtypes.ws_float(n) or ops.is_view(n) or any(
            id(m) in p.workspace_results or id(m) in p.workspace_exclude for m in (n, top) if m):
        return None
    kind = ops.buffer[n.op](n) if n.op in ops.buffer and (
        first_line or n.op not in ops.stmt) else None
    out = p.workspace_buffer(target, n.shape, zeros=kind == "zeros")
    code = None
    if kind is not None:
        code = out
    elif not first_line and n.op in ops.into:
        code = ops.into[n.op](p, n, out)
    if code is None and not first_line and n.op in st.ufunc:
        code = call_into(st, n, out)
    if code is None or len(target) + len(code) + 7 > MAX_LINE:   # (`    target = code`)
        return None
    st.ws_vars[target] = id(top or n)
    return code


def _fresh_bottom(st: _State, spine: list, shape: tuple) -> Node | None:
    """The inlined argument of the spine's last step (a ufunc) of `shape` whose code makes
    a new array the steps may be computed in (an op with a form into a buffer, `OpDef.into`,
    that is no ufunc: a matrix product, so `h = x @ W; h += b` allocates once), when every
    step has its dtype; or None."""
    fresh_into, inlined = st.ops.fresh_into, st.inlined   # (called with st.ufunc the ops')
    for a in spine[-1].args:
        if a.op in fresh_into and id(a) in inlined and a.shape == shape \
                and not st.ops.is_view(a):
            deps = st.dtypes.deps(a)   # (the top step's inputs among its: every step's are)
            if st.dtypes.input_names(spine[0]) <= deps or all(
                    st.dtypes.same(s, deps, a) for s in spine):
                return a
            return None
    return None


def call_into(st: _State, n: Node, out: str) -> str:
    """`np.ufunc(args..., out=out)` computing `n` (or the op's own form into a buffer,
    `OpDef.into`: `x ** 2` as `np.square(x, out=out)`, not `np.power`). A product with 1/q
    or -1/q is a division by q or -q, as the printer spells it (`x / q`): the two round
    differently, and the result must not depend on which way the scheduler took (which
    depends on line lengths, so on the names)."""
    p = st.p   # p.arg(n, i, 0): no precedence is below 0, never parenthesised
    form = st.ops.into.get(n.op)   # the op's own form into a buffer (`np.square(h, out=h)`)
    code = form(p, n, out) if form is not None else None
    if code is not None:
        return code
    if n.op in st.ops.product and n.args[0].is_const and \
            (u := unit_fraction(n.args[0])) is not None:
        num, den = u
        text, _ = p.scalar(den * num)
        return p.into(st.ops.divide, [p.arg(n, 1, 0), text], out)
    return p.into(st.ufunc[n.op], [p.arg(n, i, 0) for i in range(len(n.args))], out)


def _carried_add(st: _State, n: Node, buf: str | None, target: str) -> list[str] | None:
    """`dW += x * g` for `n` (`in_place`'s step or chain of steps), the sum of `buf`, a
    carried variable of steady dtype that dies here (`carried_deps`), and a value its
    buffer has the dtype of: not `x * g` computed in a new buffer and `dW` added to it;
    else None."""
    if buf is None or id(st.live.var_node[buf]) not in st.dtypes.carried_deps:
        return None
    line = _augmented_into(st, n, buf, target)
    if line is None:
        return None
    st.live.overwritten.add(buf)
    st.reused[target] = buf
    return [f"{target} = {buf}  # reuses {buf}'s buffer", line]


def _dead_buffer(st: _State, args: tuple, shape: tuple, unread_later) -> str | None:
    """`Liveness.dead_buffer` of the scheduler's state: a dead variable read by one of
    `args` whose buffer may hold the value of each of them."""
    return st.live.dead_buffer(args, shape, st.p.code, st.inlined, st.dtypes.fits,
                               unread_later)


def shape_comment(n: Node) -> str:
    """`  # (N, K)`: the comment giving the shape of the array a statement makes."""
    if not n.shape:
        return ""
    text = _SHAPE_COMMENTS.get(n.shape)
    if text is None:
        if len(_SHAPE_COMMENTS) > 4096:
            _SHAPE_COMMENTS.clear()
        text = _SHAPE_COMMENTS[n.shape] = f"  # {fmt_shape(n.shape)}"
    return text


_SHAPE_COMMENTS: dict[tuple, str] = {}   # shape -> its comment (dimensions print alike
#                                          wherever they are used)
