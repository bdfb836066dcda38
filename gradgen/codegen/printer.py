"""Expression printing, one printer class per target (in the manner of SymPy's printers).

`Printer` holds what every target shares: the code already printed for each node,
precedence-aware parentheses, scalar constants and shapes, and the dispatch of a node to
the emission rule its op declares for this target (`OpDef.emitter`). Every construct whose
spelling depends on the array library goes through one of its methods, which a target
implements: the namespace (`np.exp`), method forms (`x.sum(axis=1)`, `x.T`, `.copy()`),
array creation with a dtype, and in-place computation (`out=`, augmented assignment),
which a target may refuse (`supports_out`), so the scheduler asks before it writes into a
buffer. A loop's layout (`loop`: its header, the body's indentation) is the printer's
too; its body is scheduled by the scheduler printing it (`region`). `NumpyPrinter` is the
NumPy target; `printer_for` picks one by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import sympy

from ..dims import as_expr, print_scalar
from ..errors import InternalError
from ..ir import Node
from ..ops.registry import PREC_ATOM, PREC_CALL, REGISTRY

_ARITHMETIC = frozenset({"add", "subtract", "multiply", "divide", "power"})
INDENT = "    "
MAX_WIDTH = 96   # a line of a function's body before the function's indent: 100 columns


def fit_line(line: str, width: int = MAX_WIDTH) -> list[str]:
    """`line` kept within `width` columns where that needs no parsing: a comment cut short
    with `...`, a `del a, b, ...` split into several; any other line as it is."""
    if len(line) <= width:
        return [line]
    body = line.lstrip()
    pad = line[:len(line) - len(body)]
    if body.startswith("#"):
        return [line[:width - 3].rstrip() + "..."]
    if not body.startswith("del "):
        return [line]
    out: list[str] = []
    names: list[str] = []
    for name in body[4:].split(", "):
        if names and len(pad) + 4 + len(", ".join([*names, name])) > width:
            out.append(pad + "del " + ", ".join(names))
            names = []
        names.append(name)
    return [*out, pad + "del " + ", ".join(names)]


@dataclass
class RegionCode:
    """A region (loop body) of a node, scheduled as statements: what the node's statement
    rule lays out (`Printer.region`)."""

    index: str                  # the variable of the loop index
    carried: tuple[str, ...]    # the carried variables; they hold the final values after
    init: list[str]             # statements before the loop: the carried variables set
    body: list[str]             # the body's statements, the carried variables' updates last


class Printer:
    """Prints nodes whose arguments already have code (a name or an inlined expression).

    Subclasses set `target` (the key of the ops' per-target emission rules) and
    `namespace` (the canonical name of the array module) and implement the construct
    methods below."""

    target: str = ""
    namespace: str = ""
    # Whether code may write into a buffer it allocated (`out=`, `x += y`): when False the
    # scheduler never asks for `into` or `augmented`.
    supports_out: bool = False
    # the float arguments a function may make one dtype at entry, node id -> name (the
    # scheduler's `covers`; set by the compiler for a target that writes in place)
    one_dtype: Mapping[int, str] = MappingProxyType({})
    # whether `setitem` may write into a buffer the function owns (the array-API target's
    # `_set` is functional where arrays are immutable), though nothing else is in place
    owned_writes: bool = False
    # whether the function takes its temporaries from a workspace `ws` (`--workspace`:
    # the private twin of each function; `workspace_buffer`)
    workspace: bool = False
    # the nodes (by id) never given a workspace buffer: the results of the entry point's
    # functions, (id(loop), index) of a loop's final value that is one, and the nodes
    # whose buffers reach a result (`schedule.workspace_flows`)
    workspace_results: frozenset = frozenset()
    workspace_parts: frozenset = frozenset()
    workspace_exclude: frozenset = frozenset()

    def __init__(self, names: dict[str, str] | None = None):
        self.names = dict(names or {})   # canonical -> actual module-level names
        self.ns = self.ref(self.namespace)
        # dims.print_scalar spells numbers through the canonical name `np` (np.pi, np.inf)
        self._scalar_names = {**self.names, "np": self.ns}
        self.code: dict[int, tuple[str, int]] = {}
        self.dims_used: set[sympy.Symbol] = set()
        self.preludes: dict[str, str] = {}
        self.scalars: set[int] = set()   # nodes printed as Python numbers (see emit)
        # node id -> the variables its statement assigned besides its target (a loop's
        # carried variables), and the scheduler's hook that schedules a region's body
        self.assigned: dict[int, tuple[str, ...]] = {}
        self.schedule_region: Callable[..., RegionCode] | None = None
        self._emitters = _emitters(self.target)

    def ref(self, name: str) -> str:
        """The name under which the module knows its own helper or builtin `name`
        (`_sigmoid`, `float`): another one when a user name takes it."""
        return self.names.get(name, name)

    # -- used by the emission rules of the ops (target-independent)
    def arg(self, node: Node, i: int, prec: int) -> str:
        """Code of argument `i` of `node`, parenthesised if it binds looser than `prec`."""
        text, p = self.code[id(node.args[i])]
        return f"({text})" if p < prec else text

    def args(self, node: Node, prec: int = 0) -> list[str]:
        """Code of every argument of `node`, each parenthesised below `prec`."""
        return [self.arg(node, i, prec) for i in range(len(node.args))]

    def code_of(self, node: Node) -> tuple[str, int]:
        """Code and precedence of an already printed node."""
        return self.code[id(node)]

    def scalar(self, value: sympy.Expr, integer: bool = False) -> tuple[str, int]:
        """A scalar constant (possibly an expression of dimension sizes); `integer`: a size
        (a shape, a slice bound), whose divisions are exact integer ones (`C // H`)."""
        self.dims_used |= {s for s in as_expr(value).free_symbols}
        return print_scalar(value, self._scalar_names, integer)

    def shape(self, shape) -> str:
        parts = [self.scalar(d, integer=True)[0] for d in shape]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"

    def axes(self, axes: tuple[int, ...]) -> str:
        return str(axes[0]) if len(axes) == 1 else f"({', '.join(map(str, axes))})"

    def helper(self, name: str, args: Sequence[str], kwargs: Sequence[str] = ()) -> str:
        """A call of a private helper the module carries (`_sigmoid(x)`)."""
        return f"{self.ref(name)}({', '.join([*args, *kwargs])})"

    # -- the constructs a target spells its own way
    def fn(self, name: str) -> str:
        """The array library's function `name` (dotted for a submodule: `linalg.solve`)."""
        return f"{self.ns}.{name}"

    def call(self, name: str, args: Sequence[str], kwargs: Sequence[str] = ()) -> str:
        """`ns.name(args..., key=value...)`; `kwargs` are `key=value` strings."""
        return f"{self.fn(name)}({', '.join([*args, *kwargs])})"

    def reduction(self, name: str, node: Node, kwargs: Sequence[str]) -> str:
        """The reduction `name` (sum, max, ...) of the argument of `node`, with
        `axis=`/`keepdims=` keyword strings."""
        raise NotImplementedError

    def method(self, x_code: str, name: str, args: Sequence[str] = ()) -> str:
        """An array method (`x.reshape(shape)`) or the target's function form of it."""
        raise NotImplementedError

    def full_transpose(self, x_code: str, ndim: int = 2) -> str:
        """All `ndim` axes of `x` reversed (`x.T`)."""
        raise NotImplementedError

    def prologue(self, args: Sequence[str]) -> list[str]:
        """Lines at the start of every function, after the docstring (`args`: the
        arguments' names): the array API target finds its namespace there."""
        return []

    def dtype_of(self, x_code: str) -> str:
        """The dtype of an array."""
        raise NotImplementedError

    def subscript(self, x_code: str, items: Sequence[str], ndim: int,
                  trim: bool = True) -> str:
        """`x[items]` of an array of `ndim` axes (`x_code` bound tightly); with `trim`,
        trailing full slices left out (`x[:, None]`), else the items as they are."""
        items = list(items)
        while trim and items and items[-1] == ":":
            items.pop()
        return f"{x_code}[{', '.join(items) if items else '()'}]"

    def shape_of(self, x_code: str) -> str:
        """The shape of an array."""
        return f"{x_code}.shape"

    def setitem(self, target: str, items: Sequence[str], ndim: int, value: str) -> str:
        """The statement writing `value` into the entries `items` select of `target`, an
        array of `ndim` axes the function owns (`target[0, :] = value`)."""
        return f"{self.subscript(target, items, ndim, trim=False)} = {value}"

    def result_type(self, args: Sequence[str]) -> str:
        """The dtype these arrays or numbers promote to; with none, the default float."""
        raise NotImplementedError

    def creation(self, kind: str, shape: str, dtype: str, value: str | None = None) -> str:
        """A new array: `kind` is zeros, ones, full (of `value`) or eye (`shape` being its
        sizes' code), in `dtype`."""
        raise NotImplementedError

    def copy(self, x_code: str, prec: int, scalar: bool = False) -> str:
        """A fresh copy of an array (or of a 0-d value that may be a Python number)."""
        raise NotImplementedError

    def number(self, code: str) -> str:
        """A Python number from a 0-d computation of numbers (weakly typed)."""
        return f"{self.ref('float')}({code})"

    def float64(self, code: str) -> str:
        """A number as the library's float64 scalar (IEEE arithmetic on numbers)."""
        return f"{self.ns}.float64({code})"

    def ufunc(self, name: str) -> str:
        """The function computing an op elementwise (an `OpDef.ufunc`): the library's, or a
        private helper of the module (names starting with `_`) that takes `out=` alike."""
        return self.ref(name) if name.startswith("_") else self.fn(name)

    def into(self, ufunc: str, args: Sequence[str], out: str) -> str:
        """`ufunc(args...)` computed into the buffer `out`."""
        raise InternalError(f"target {self.target!r} computes nothing in place")

    def augmented(self, target: str, ufunc: str, other: str) -> str | None:
        """`target OP= other` for the binary `ufunc`, or None when it has no such form."""
        return None

    # -- regions: a node holding a body graph (a loop), printed as a statement
    def region(self, node: Node, i: int = 0) -> RegionCode:
        """Region `i` of `node` scheduled by the scheduler printing `node` (the same names,
        inlining and releases as any code), its inputs bound to the loop index, the carried
        variables and the values from outside."""
        if self.schedule_region is None:
            raise InternalError(f"{node!r}: no scheduler to print its region")
        code = self.schedule_region(node, node.regions[i])
        self.assigned[id(node)] = code.carried
        return code

    def carried(self, node: Node, i: int) -> str:
        """The variable holding the `i`-th carried value of the loop `node` after it."""
        return self.assigned[id(node)][i]

    def loop(self, index: str, stop: str, body: Sequence[str], start: str = "0",
             step: str = "1", reverse: bool = False) -> list[str]:
        """A loop running `body` (lines) for `index` = start, start + step, ... (before
        `stop`), or in the reverse order of those values."""
        lines = [fitted for line in body or ["pass"]
                 for fitted in (fit_line(INDENT + line) if line else [line])]
        bounds = [stop] if start == "0" and step == "1" else \
            [start, stop] if step == "1" else [start, stop, step]
        values = f"{self.ref('range')}({', '.join(bounds)})"
        if reverse:
            values = f"{self.ref('reversed')}({values})"
        return [f"for {index} in {values}:", *lines]

    # -- used by the scheduler
    def emit(self, node: Node) -> tuple[str, int]:
        """Code and precedence of `node` as an expression."""
        emit, prelude, elementwise = self._emitters[node.op]
        if emit is None:
            self._missing(node)
        if prelude:
            self.preludes[node.op] = prelude
        args = node.args
        if elementwise and args and (args[0].is_const or id(args[0]) in self.scalars) and all(
                a.is_const or id(a) in self.scalars for a in args):
            # A function of numbers and dimension sizes that folding left alone (log(N),
            # arithmetic too large to fold): a Python number. Arithmetic on such numbers
            # goes through the library's function, in float64: in Python, 1 / 0 and
            # 10.0 ** 400 raise where NumPy gives inf. A NumPy float64 would turn float32
            # arrays into float64: as a Python float it takes their dtype.
            opdef = REGISTRY[node.op]
            if node.dtype == "float":   # a comparison stays a boolean for where()
                self.scalars.add(id(node))
            if len(args) == 2 and opdef.ufunc in _ARITHMETIC:
                args = [self.float64(self.arg(node, i, 0)) for i in range(2)]
                return self.number(self.call(opdef.ufunc, args)), PREC_ATOM
            return self.number(emit(self, node)[0]), PREC_ATOM
        return emit(self, node)

    def emit_stmt(self, node: Node, target: str) -> list[str]:
        """Statements computing `node` into `target` (ops that need more than an expression)."""
        stmt = REGISTRY[node.op].statement(self.target)
        if stmt is None:
            raise InternalError(f"op {node.op!r} has no statement form for {self.target!r}")
        return stmt(self, node, target)

    def set_name(self, node: Node, name: str) -> None:
        self.code[id(node)] = (name, PREC_ATOM)

    def _missing(self, node: Node):
        raise InternalError(f"op {node.op!r} has no emission for target {self.target!r}")


_EMITTERS: dict[str, dict] = {}


def _emitters(target: str) -> dict:
    """op name -> (its emission rule for `target` or None, its prelude, whether it is
    elementwise): what `Printer.emit` asks of every node, read off the registry once (it
    is complete once imported)."""
    table = _EMITTERS.get(target)
    if table is None or len(table) != len(REGISTRY):
        table = _EMITTERS[target] = {
            op: (d.emitter(target), d.prelude, "elementwise" in d.traits)
            for op, d in REGISTRY.items()}
    return table


_AUGMENTED = {"add": "+=", "subtract": "-=", "multiply": "*=", "divide": "/=", "power": "**="}


class NumpyPrinter(Printer):
    """The NumPy target: method forms where they skip NumPy's function dispatch, and
    in-place computation into buffers the function owns."""

    target = "numpy"
    namespace = "np"
    supports_out = True

    def reduction(self, name: str, node: Node, kwargs: Sequence[str]) -> str:
        """The array method `x.sum(axis=1)`, which skips NumPy's function dispatch (a few
        microseconds a call), or `np.sum(x, ...)` when `x` is an argument of the generated
        function (which may be a list or a Python number)."""
        if node.args[0].is_input:
            return self.call(name, [self.arg(node, 0, 0)], kwargs)
        return self.method(self.arg(node, 0, PREC_CALL), name, kwargs)

    def method(self, x_code: str, name: str, args: Sequence[str] = ()) -> str:
        return f"{x_code}.{name}({', '.join(args)})"

    def full_transpose(self, x_code: str, ndim: int = 2) -> str:
        return f"{x_code}.T"

    def dtype_of(self, x_code: str) -> str:
        return f"{x_code}.dtype"

    def result_type(self, args: Sequence[str]) -> str:
        return self.call("result_type", args) if args else self.fn("float64")

    def creation(self, kind: str, shape: str, dtype: str, value: str | None = None) -> str:
        args = [shape] if value is None else [shape, value]
        return self.call(kind, args, [f"dtype={dtype}"])

    def copy(self, x_code: str, prec: int, scalar: bool = False) -> str:
        if scalar:   # also a Python number passed for a scalar
            return self.call("array", [x_code])
        return (x_code if prec >= PREC_CALL else f"({x_code})") + ".copy()"

    def into(self, ufunc: str, args: Sequence[str], out: str) -> str:
        return f"{self.ufunc(ufunc)}({', '.join(args)}, out={out})"

    def augmented(self, target: str, ufunc: str, other: str) -> str | None:
        op = _AUGMENTED.get(ufunc)
        return None if op is None else f"{target} {op} {other}"

    def workspace_buffer(self, name: str, shape, zeros: bool = False) -> str:
        """The workspace's buffer for variable `name` (`ws("Q", N, M)`, uninitialised, or
        `ws.zeros(...)`): `name` is an identifier, so it needs no escaping."""
        parts = [self.scalar(d, integer=True)[0] for d in shape]
        head = "ws.zeros(" if zeros else "ws("
        return head + ", ".join(['"' + name + '"', *parts]) + ")"


PRINTERS: dict[str, type[Printer]] = {"numpy": NumpyPrinter}


def printer_for(target: str, names: dict[str, str] | None = None) -> Printer:
    """A fresh printer of the target called `target`."""
    try:
        cls = PRINTERS[target]
    except KeyError:
        raise InternalError(f"no printer for target {target!r}") from None
    return cls(names)


# NumPy's names of the functions the ops ask for -> the array API standard's (2023.12).
_STANDARD_NAMES = {
    "arctan": "atan", "arcsin": "asin", "arccos": "acos", "arctan2": "atan2",
    "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "power": "pow",
    "concatenate": "concat", "absolute": "abs", "rint": "round", "transpose": "permute_dims",
    "outer": "linalg.outer", "cumsum": "cumulative_sum", "cumprod": "cumulative_prod",
    "diagonal": "linalg.diagonal", "linalg.norm": "linalg.vector_norm",
}


# The ops' elementwise functions (`OpDef.ufunc`) that Python's math (or an operator)
# computes on numbers, by their name there.
_MATH = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt",
         "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh", "arctan": "atan",
         "add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**"}
_OPERATORS = frozenset({"+", "-", "*", "/", "**"})
# NumPy's array methods -> the standard's function, its extra arguments and keywords.
_METHOD_FORMS = {"reshape": ("reshape", (), ()), "astype": ("astype", (), ()),
                 "copy": ("asarray", (), ("copy=True",)), "ravel": ("reshape", ("(-1,)",), ()),
                 **{r: (r, (), ()) for r in ("sum", "max", "min", "mean", "prod", "var")}}
# The functions of the standard that take at most one Python number among their arrays.
_ONE_NUMBER = frozenset({"where"})
# NumPy's positional parameters that are keyword-only in the standard.
_KEYWORD_ONLY = {"tril": ("k",), "triu": ("k",)}
# The standard's functions that create an array from sizes or numbers (`device=` taken).
_CREATION = frozenset({"arange", "eye", "zeros", "ones", "full", "empty", "linspace", "asarray"})


class ArrayApiPrinter(Printer):
    """The array API target (`--target array-api`): standard functions of the namespace
    `xp` of the arguments (`xp, device = _namespace(X, V)` at entry), no methods outside
    the standard, no `out=` and nothing in place, every array created with an argument's
    dtype on the arguments' `device`; the module's helpers take `xp` first
    (codegen/runtime_xp.py) and never import NumPy."""

    target = "array_api"
    namespace = "xp"
    supports_out = False
    owned_writes = True

    def __init__(self, names: dict[str, str] | None = None):
        super().__init__(names)
        self.device = self.ref("device")
        # numbers (log(2 * pi), log(N)) are computed with Python's math: the namespace's
        # functions take arrays, which jax.jit would trace (and float() then fails)
        self.math = self.ref("math")
        self._scalar_names.update({"np": self.math, "math": self.math})
        # The ops' preludes are NumPy code: this target's helpers come from runtime_xp.
        self._emitters = {op: (e, None, ew) for op, (e, _, ew) in self._emitters.items()}

    def fn(self, name: str) -> str:
        return f"{self.ns}.{_STANDARD_NAMES.get(name, name)}"

    def call(self, name: str, args: Sequence[str], kwargs: Sequence[str] = ()) -> str:
        """As `Printer.call`; the functions that create arrays get the arguments' device."""
        if name in _CREATION and not any(k.startswith("device=") for k in kwargs):
            kwargs = [*kwargs, f"device={self.device}"]
        args = list(args)
        for i, key in enumerate(_KEYWORD_ONLY.get(name, ()), start=1):
            if len(args) > i:   # NumPy's positional parameters the standard names
                kwargs = [*kwargs, f"{key}={args.pop(i)}"]
        if name in _ONE_NUMBER and len(args) == 3 and _is_number(args[1]) \
                and _is_number(args[2]):
            # the standard's where takes at most one Python number
            args[1] = self.call("asarray", [args[1]])
        return super().call(name, args, kwargs)

    def emit(self, node: Node) -> tuple[str, int]:
        """As `Printer.emit`; a function of numbers alone (`log(N)`) is computed with
        Python's math where it has the function (the namespace's functions take arrays,
        which jax.jit traces)."""
        args = node.args
        _, _, elementwise = self._emitters[node.op]
        numbers = elementwise and args and all(a.is_const or id(a) in self.scalars
                                               for a in args)
        fn = _MATH.get(REGISTRY[node.op].ufunc or "")
        if not numbers or fn is None or node.dtype != "float":
            return super().emit(node)
        self.scalars.add(id(node))
        codes = [self.arg(node, i, 0) for i in range(len(args))]
        if fn in _OPERATORS:
            a, b = (f"{self.ref('float')}({c})" for c in codes)
            return self.number(f"{a} {fn} {b}"), PREC_ATOM
        return self.number(f"{self.math}.{fn}({', '.join(codes)})"), PREC_ATOM

    def helper(self, name: str, args: Sequence[str], kwargs: Sequence[str] = ()) -> str:
        """A helper of the module, called with the namespace first (`_sigmoid(xp, z)`);
        its array-API source is recorded for the module (runtime_xp.HELPERS)."""
        from . import runtime_xp

        if name in runtime_xp.NO_NAMESPACE:
            return super().helper(name, args, kwargs)
        first = [self.ns, self.device] if name in runtime_xp.WITH_DEVICE else [self.ns]
        if name in runtime_xp.HELPERS:
            self.preludes[name] = runtime_xp.HELPERS[name]
            for other in runtime_xp.CALLS.get(name, ()):
                self.preludes[other] = runtime_xp.HELPERS[other]
        elif name not in runtime_xp.CHECKS:
            raise InternalError(f"no array-API helper {name!r}")
        return super().helper(name, [*first, *args], kwargs)

    def prologue(self, args: Sequence[str]) -> list[str]:
        return [f"{self.ns}, {self.device} = {self.ref('_namespace')}({', '.join(args)})"]

    def reduction(self, name: str, node: Node, kwargs: Sequence[str]) -> str:
        return self.call(name, [self.arg(node, 0, 0)], kwargs)

    def method(self, x_code: str, name: str, args: Sequence[str] = ()) -> str:
        form = _METHOD_FORMS.get(name)
        if form is None:
            raise InternalError(f"the array API target has no method {name!r}")
        fn, extra, kwargs = form
        return self.call(fn, [_unparen(x_code), *args, *extra], kwargs)

    def full_transpose(self, x_code: str, ndim: int = 2) -> str:
        if ndim == 2:
            return self.call("matrix_transpose", [_unparen(x_code)])
        if ndim < 2:
            return x_code
        return self.call("permute_dims", [_unparen(x_code), str(tuple(range(ndim))[::-1])])

    def dtype_of(self, x_code: str) -> str:
        return f"{x_code}.dtype"

    def subscript(self, x_code: str, items: Sequence[str], ndim: int,
                  trim: bool = True) -> str:
        """`x[items]`, with `...` after them where they index fewer than its `ndim` axes
        (the standard leaves a partial index unspecified)."""
        items = list(items)
        while "..." not in items and items and items[-1] == ":":
            items.pop()
        if "..." not in items and sum(i != "None" for i in items) < ndim:
            items.append("...")
        return f"{x_code}[{', '.join(items)}]"

    def setitem(self, target: str, items: Sequence[str], ndim: int, value: str) -> str:
        """`target = _set(xp, (index...), value, target)`: in place where the library allows
        it, else (JAX's immutable arrays) `target.at[index].set(value)`; the index as a
        tuple of slices (`(slice(None), 0)`), completed with `...`."""
        items = list(items)
        if "..." not in items and sum(i != "None" for i in items) < ndim:
            items.append("...")
        parts = []
        for item in items:
            if ":" in item:
                bounds = [b.strip() or "None" for b in item.split(":")]
                if len(bounds) == 3 and bounds[2] == "None":
                    bounds.pop()
                if bounds == ["None", "None"]:
                    bounds = ["None"]
                parts.append(f"{self.ref('slice')}({', '.join(bounds)})")
            else:
                parts.append("Ellipsis" if item == "..." else item)
        index = f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
        return f"{target} = {self.helper('_set', [index, value, target])}"

    def result_type(self, args: Sequence[str]) -> str:
        arrays = [a for a in args if not _is_number(a)]
        if not arrays:
            return self.fn("float64")
        return arrays[0] + ".dtype" if len(arrays) == 1 else self.call("result_type", arrays)

    def creation(self, kind: str, shape: str, dtype: str, value: str | None = None) -> str:
        args = [shape] if value is None else [shape, value]
        return self.call(kind, args, [f"dtype={dtype}"])

    def copy(self, x_code: str, prec: int, scalar: bool = False) -> str:
        if scalar:   # also a Python number passed for a scalar
            return self.call("asarray", [_unparen(x_code)],
                             [f"device={self.device}", "copy=True"])
        return self.call("asarray", [_unparen(x_code)], ["copy=True"])

    def float64(self, code: str) -> str:
        return f"{self.ref('float')}({code})"


def _unparen(code: str) -> str:
    """`code` without the parentheses a caller added around it (a call argument needs none)."""
    if code.startswith("(") and code.endswith(")"):
        depth = 0
        for i, ch in enumerate(code):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and i < len(code) - 1:
                return code
        return code[1:-1]
    return code


_NUMBER = re.compile(r"[-+]?(\d[\d.eE+-]*)( [-+*/] [-+]?\d[\d.eE+-]*)*")


def _is_number(code: str) -> bool:
    """Whether `code` is a Python number (`0.5`, `1 / 2`): no array of any library."""
    return _NUMBER.fullmatch(code) is not None


PRINTERS["array_api"] = ArrayApiPrinter
