"""`for NAME in range(...)`: one `scan` node per loop (SPEC §1 "Loops", the scan contract
in gradgen/ops/control.py).

The body is lowered once, whatever the trip count: the loop variable is the body's index
input, and each carried variable (assigned before the loop and reassigned in it) a carry
input. Everything else the body reads is a value of the function around it. The body is
then closed over those values (`close`): the nodes that depend on neither the index nor a
carried value are loop-invariant, computed once before the loop, and the body reads them
as its "outside" inputs (the hoisting of invariant code is this construction itself).
Names first assigned in the body are local to one step: reading one after the loop is an
error that says how to carry it.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass

import sympy

from .. import ir
from ..dims import fmt_shape, same_shape
from ..ir import Node, Region, make, make_as_is
from ..ops.constants import scalar_array
from ..ops.dtypes import dtype_sources
from .locations import Loc, Located
from .scope import POISON, Poisoned, Scope, poison_statement
from .static import dimension, signed_int

_NOT_A_RANGE = ("a loop must run over range(...): for t in range(T), range(start, stop) or "
                "range(start, stop, step)")
_COUNTER = itertools.count(1)   # a number per loop built: its body's inputs are its own


@dataclass(frozen=True)
class LoopLocal:
    """The value of a name after the loop that assigned it first (or whose variable it
    was): reading it is an error (`message`)."""

    message: str


def loop_local_error(node: ast.Name, value: LoopLocal) -> Located:
    """The error for reading a name that is local to a loop's steps."""
    return Located(node, value.message.format(name=node.id))


def lower_loop(low, stmt: ast.For, scope: Scope) -> None:
    """Lower `stmt`: one scan node; the carried variables bound to its final values."""
    if stmt.orelse:
        raise Located(_else_keyword(low.src, stmt), "a loop's 'else' block is not supported: "
                      "a loop always runs all its steps; move these statements after the loop")
    _not_over_an_array(stmt, scope)
    if not isinstance(stmt.target, ast.Name):
        raise Located(stmt.target, "the loop variable must be a single name: for t in "
                                   "range(T)")
    name = stmt.target.id
    start, stop, step = _range(stmt.iter, scope)
    length = _trip_count(start, stop, step)
    low._check_new_name(stmt.target, name)
    if name in scope.dims:
        raise Located(stmt.target, f"'{name}' is a dimension; the loop variable may not "
                                   "share its name")
    before = scope.env.get(name)
    if before is not None and not isinstance(before, LoopLocal):
        line = scope.lines.get(name)
        what = f"assigned on line {line}" if line else "an argument"
        raise Located(stmt.target, f"the loop variable '{name}' would replace the variable "
                                   f"'{name}' ({what}); give the loop variable another name")
    assigned = _assigned_names(stmt.body)
    if name in assigned:
        raise Located(assigned[name], f"the loop variable '{name}' cannot be assigned in the "
                                      "loop: it takes the values of range(...) in turn; "
                                      "assign to another name")
    carried = [n for n in assigned if n in scope.env and not isinstance(scope.env[n], LoopLocal)]
    if any(scope.env[n] is POISON for n in carried):
        _poison(scope, assigned, name)
        raise Poisoned
    b = ir.builder()
    first = b.serial   # every node made from here on is new: the body's, or hoisted
    loop_id = next(_COUNTER)
    index = make("input", name=name, role="index", shape=(), loop=loop_id)
    inits = [scope.env[n] for n in carried]
    inputs = [_input(n, "carry", v, loop_id) for n, v in zip(carried, inits)]
    saved = {n: scope.env.get(n) for n in (name, *assigned)}
    scope.env[name] = index
    for n, x in zip(carried, inputs):
        scope.env[n] = x
        scope.names[x] = n
    loop_vars = scope.dims.__dict__.setdefault("loop_vars", set())
    loop_vars.add(name)
    last = scope.last_target
    try:
        ok = _statements(low, stmt.body, scope)
    finally:
        loop_vars.discard(name)
    outputs = [scope.env.get(n) for n in carried]
    if not ok or any(v is POISON for v in outputs):
        _poison(scope, assigned, name)
        raise Poisoned
    for n, x, v in zip(carried, inputs, outputs):
        if not same_shape(v.shape, x.shape) or v.dtype != x.dtype:
            where = last.get(n, stmt)
            raise Located(where, f"'{n}' is carried by the loop on line {stmt.lineno}: it has "
                                 f"{_type(x)} before the loop, and this assignment gives it "
                                 f"{_type(v)}; a carried variable keeps its shape and dtype "
                                 f"on every step: assign this value to another name, or give "
                                 f"'{n}' this shape before the loop", context=True)
    inits = _numbers_as_arrays(low, inits, inputs, outputs, length)
    outputs = _steps_as_arrays(low, outputs)
    body, outside = close([index, *inputs], outputs, first, scope.names, loop_id)
    attrs = {}
    if start != 0:
        attrs["start"] = start
    if step != 1:
        attrs["step"] = step
    scan = make("scan", *inits, *outside, body=body, length=length, **attrs)
    low.budget.charge(stmt, 1)
    for n in assigned:
        scope.env[n] = _local(n, stmt) if saved[n] is None or isinstance(saved[n], LoopLocal) \
            else saved[n]
    for i, n in enumerate(carried):
        scope.env[n] = make("part", scan, index=i)
    scope.env[name] = LoopLocal(f"'{{name}}' is the variable of the loop on line "
                                f"{stmt.lineno}, which it is local to; after the loop, "
                                "use the stop of its range instead")


def _numbers_as_arrays(low, inits: list, inputs: list, outputs: list, length) -> list:
    """The initial values, a number (`loss = 0.0`) made a 0-d array in the entry point's
    dtype where the final value could otherwise still be that Python number: when the loop
    may run no step, or when its steps add only numbers (`k += 2`). Elsewhere the number
    stays (`loss = 0.0` reads as written; the first step makes it an array)."""
    numbers = {id(x) for x, v in zip(inputs, inits) if v.is_const and v.dtype == "float"}
    if not numbers:
        return inits
    runs = (length > 0) if isinstance(length, int) else bool(length.is_positive)
    return [scalar_array(v, low.calls.inputs)
            if id(x) in numbers and (not runs or all(id(s) in numbers
                                                     for s in dtype_sources(out)))
            else v for x, v, out in zip(inputs, inits, outputs)]


def _steps_as_arrays(low, outputs: list) -> list:
    """The next values, a number a step assigns (`s = tanh(1.5)`) made a 0-d array in the
    entry point's dtype: after the loop the variable would otherwise be a Python number,
    and NumPy functions of it (`np.sin(s)`) float64 scalars that turn float32 into float64."""
    return [scalar_array(out, low.calls.inputs) if out.is_const and out.dtype == "float"
            else out for out in outputs]


def _statements(low, stmts: list, scope: Scope) -> bool:
    """The statements of a loop's body, each lowered as `Lowering.body` lowers one (errors
    collected in an entry point, raised in a helper): whether all of them were lowered."""
    ok = True
    for stmt in stmts:
        origin = None if scope.helper else low.src.origin(stmt)
        try:
            with ir.builder().at(origin=origin):
                if isinstance(stmt, ast.Return):
                    raise Located(stmt, "'return' inside a loop is not supported: a loop runs "
                                        "all its steps; assign the value to a variable before "
                                        "the loop, update it in the loop, and return it after "
                                        "the loop")
                low.statement(stmt, scope)
        except (Located, Poisoned) as e:
            if scope.helper or getattr(e, "fatal", False):
                raise
            if isinstance(e, Located):
                low.fail(e)
            poison_statement(stmt, scope)
            ok = False
    return ok


def _local(name: str, stmt: ast.For) -> LoopLocal:
    return LoopLocal(f"'{{name}}' is first assigned inside the loop on line {stmt.lineno}, so "
                     "it is local to one step of the loop; to use its value after the loop, "
                     f"assign '{name}' before the loop (then the loop carries it)")


def _type(x: Node) -> str:
    return f"shape {fmt_shape(x.shape)}" + ("" if x.dtype == "float" else f" ({x.dtype})")


def _input(name: str, role: str, like: Node, loop_id: int) -> Node:
    """A body input for a value like `like` (its shape and dtype)."""
    extra = {} if like.dtype == "float" else {"dtype": like.dtype}
    return make("input", name=name, role=role, shape=tuple(like.shape), loop=loop_id, **extra)


def _poison(scope: Scope, assigned: dict, name: str) -> None:
    for n in (*assigned, name):
        scope.env[n] = POISON


def close(inputs: list[Node], outputs: list[Node], first: int, names: dict,
          loop_id: int) -> tuple[Region, list[Node]]:
    """The body of a loop as a closed region, and the values it reads from outside.

    `outputs` (the next carried values) were built from the body's `inputs` (index and
    carried values) and from values of the function around the loop. A node that depends
    on no input is loop-invariant: it is computed once before the loop (hoisted), and the
    body reads it as an "outside" input. Nodes made before serial `first` are the
    function's (invariant, not visited further); constants stay in the body."""
    own = {id(x) for x in inputs}
    variant: dict[int, bool] = {}
    order: list[Node] = []
    stack = [(o, False) for o in reversed(outputs)]
    while stack:   # iterative DFS over the nodes made for the body
        n, ready = stack.pop()
        if id(n) in variant:
            continue
        if id(n) in own:
            variant[id(n)] = True
            continue
        if n.serial <= first or not n.args:
            variant[id(n)] = False
            continue
        if not ready:
            stack.append((n, True))
            stack.extend((a, False) for a in n.args if id(a) not in variant)
            continue
        variant[id(n)] = any(variant[id(a)] for a in n.args)
        if variant[id(n)]:
            order.append(n)
    outside: list[Node] = []
    slot: dict[int, Node] = {}   # id of an outside value -> the body's input for it
    taken = {x.attr("name") for x in inputs}

    def read(a: Node) -> Node:
        if variant.get(id(a)) or a.is_const:
            return new.get(id(a), a)
        x = slot.get(id(a))
        if x is None:
            name = names.get(a) or _derived_name(a, names)
            if not name or name in taken:
                name = f"outside{len(outside)}"
            taken.add(name)
            x = slot[id(a)] = _input(name, "outside", a, loop_id)
            outside.append(a)
        return x

    new: dict[int, Node] = {}
    b = ir.builder()
    for n in order:
        args = [read(a) for a in n.args]
        if all(x is y for x, y in zip(args, n.args)):
            continue
        with b.at(origin=n.origin, phase=n.phase):
            m = make_as_is(n.op, *args, **n.kw)
        new[id(n)] = m
        if n in names:
            names.setdefault(m, names[n])
    body_outputs = [read(o) if not variant.get(id(o)) else new.get(id(o), o) for o in outputs]
    return Region([*inputs, *slot.values()], body_outputs), outside


def _derived_name(a: Node, names: dict) -> str | None:
    """A name for the unnamed value `a` that only adds or drops unit axes of a named array
    (`log_A[None, :, :]`): the array's, as the emitted code names temporaries (`log_A_exp`,
    not `outside2_exp`); for an entry of a named array or argument at numbers, the array's
    and the numbers (`k0` for `k[0]`, whose cotangent is `dk0`, not `doutside1`); None
    for anything else."""
    opdef = ir.builder().ops[a.op]
    if not a.args:
        return None
    if "unit_axes" in opdef.traits or "transparent" in opdef.traits:
        return names.get(a.args[0])
    index, x = a.attr("index"), a.args[0]
    base = names.get(x) or (x.attr("name") if x.is_input else None)
    if opdef.view == "view" and len(a.args) == 1 and base and isinstance(index, tuple) \
            and index and all(isinstance(i, int) and i >= 0 for i in index):
        return base + "_".join(map(str, index))
    return None


def _array_named(node, scope: Scope) -> Node | None:
    """The array a plain name `node` stands for, if it is one."""
    value = scope.env.get(node.id) if isinstance(node, ast.Name) else None
    return value if isinstance(value, Node) and value.ndim else None


def _not_over_an_array(stmt: ast.For, scope: Scope) -> None:
    """The forms authors write for a loop over an array's rows or backwards
    (`for x_t in X`, `enumerate(X)`, `reversed(range(T))`), refused with the range(...)
    loop that says the same."""
    it = stmt.iter
    call = it.func.id if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) else None
    if call == "reversed":
        raise Located(it, "reversed(...) is not supported: count down with a negative step, "
                          "for t in range(T - 1, -1, -1)")
    array = _array_named(it.args[0] if call == "enumerate" and it.args else it, scope)
    if array is not None:
        name = (it.args[0] if call == "enumerate" else it).id
        row = stmt.target.elts[-1].id if isinstance(stmt.target, ast.Tuple) and \
            stmt.target.elts and isinstance(stmt.target.elts[-1], ast.Name) else (
                stmt.target.id if isinstance(stmt.target, ast.Name) else "row")
        t = "i" if row == "t" else "t"
        raise Located(it, f"a loop runs over range(...), not over an array: write for {t} in "
                          f"range({array.shape[0]}): and {row} = {name}[{t}] in the body")


def _range(node, scope: Scope) -> tuple:
    """The (start, stop, step) of `range(...)`: bounds integer literals or dimension
    expressions, the step a nonzero integer literal."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "range"):
        raise Located(node, _NOT_A_RANGE)
    if node.keywords:
        raise Located(node.keywords[0], "range() takes no keyword arguments")
    if not 1 <= len(node.args) <= 3:
        raise Located(node, f"range() takes 1 to 3 arguments, got {len(node.args)}")
    for a in node.args:
        if isinstance(a, ast.Starred):
            raise Located(a, "'*' unpacking is not supported")
    step = 1
    if len(node.args) == 3:
        step = signed_int(node.args[2])
        if step is None:
            raise Located(node.args[2], "the step of range() must be an integer literal "
                                        "(range(0, T, 2)), so that the number of steps is "
                                        "known from the sizes")
        if step == 0:
            raise Located(node.args[2], "the step of range() must not be zero")
    bounds = [_bound(a, scope) for a in node.args[:2]]
    start, stop = (0, bounds[0]) if len(node.args) == 1 else bounds
    return start, stop, step


def _bound(node, scope: Scope):
    """A bound of range(): an integer literal (any sign) or a dimension expression."""
    value = signed_int(node)
    if value is not None:
        return value
    if isinstance(node, ast.Constant):
        raise Located(node, "the bounds of range() must be integers or dimension "
                            f"expressions, not {type(node.value).__name__}")
    size = _size_of_array(node, scope)
    if size is not None:
        raise Located(node, f"write {size} for {ast.unparse(node)}: the bounds of range() "
                            "are integer literals or dimension expressions", context=True)
    if isinstance(node, ast.Name) and node.id not in scope.dims and node.id not in getattr(
            scope.dims, "constants", {}) and node.id not in getattr(scope.dims, "loop_vars", ()):
        what = "a variable" if node.id in scope.env else "not a dimension of the arguments"
        raise Located(node, f"'{node.id}' is {what}: the bounds of range() are integer "
                            "literals, dimension expressions of the arguments (range(T - 1)) "
                            "or module-level constants "
                            f"({'STEPS' if node.id in scope.env else node.id} = 100 at the top "
                            "of the file)")
    return dimension(node, scope.dims, create=False)[0]


def _size_of_array(node, scope: Scope):
    """The size `len(x)` or `x.shape[k]` stands for (as the dimension expression to write
    instead), or None for other forms."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == "len" and len(node.args) == 1 and not node.keywords:
        array, axis = _array_named(node.args[0], scope), 0
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
            and node.value.attr == "shape" and signed_int(node.slice) is not None:
        array, axis = _array_named(node.value.value, scope), signed_int(node.slice)
    else:
        return None
    if array is None or not -array.ndim <= axis < array.ndim:
        return None
    return array.shape[axis]


def _trip_count(start, stop, step: int):
    """The number of steps of range(start, stop, step) (an int, or a dimension expression:
    then the loop runs no step where it is not positive)."""
    if isinstance(start, int) and isinstance(stop, int):
        return len(range(start, stop, step))
    start, stop = sympy.Integer(start) if isinstance(start, int) else start, \
        sympy.Integer(stop) if isinstance(stop, int) else stop
    span = stop - start if step > 0 else start - stop
    k = abs(step)
    count = span if k == 1 else sympy.floor((span + k - 1) / k)
    if count.is_Integer:
        return max(int(count), 0)
    return count


def _assigned_names(stmts: list) -> dict:
    """The names the statements assign (nested loops included, not their loop variables),
    in source order: name -> the first target that assigns it."""
    found: dict = {}
    todo = list(reversed(stmts))
    while todo:
        s = todo.pop()
        targets = []
        if isinstance(s, ast.Assign):
            targets = s.targets
        elif isinstance(s, ast.AugAssign):
            targets = [s.target]
        elif isinstance(s, ast.For):
            todo.extend(reversed(s.body))
            continue
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Subscript):   # A[i] = v assigns A
                    base = n.value
                    if isinstance(base, ast.Name):
                        found.setdefault(base.id, base)
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    found.setdefault(n.id, n)
    return found


def _else_keyword(src, stmt: ast.For):
    """Where the `else` of a for/else is written (the AST does not record it)."""
    first = stmt.orelse[0]
    last = max(getattr(s, "end_lineno", s.lineno) for s in stmt.body)
    for line in range(first.lineno, last, -1):
        text = src.line(line)
        stripped = text.lstrip()
        if stripped.startswith("else") and stripped[4:].lstrip().startswith(":"):
            return Loc(line, len(text.encode("utf-8")) - len(stripped.encode("utf-8")))
    return first
