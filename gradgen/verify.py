"""The emitted-module verifier: a generated module may do nothing but array arithmetic.

`verify_module(source)` parses the text of a generated module (never runs it) and walks
its whole syntax tree against allow-lists of what the code generator emits: the
templates (`templates/*.j2`), the runtime helpers (`gradgen/codegen/runtime.py`, the
ops' preludes) and the emission rules of the ops (`gradgen/ops/*.py`, the scheduler).
Anything else, such as an injected statement, an import, a call of `open`, `eval`, a
dunder attribute, a class, a lambda, a module-level assignment that is not a spec
constant, or a string where the generator never writes one, raises `VerifyError` with
the line, the column and what is not allowed.

What runs at import of a verified module: its docstring, `import numpy as <alias>`,
function definitions (decorators only `@<alias>.errstate(...)`, defaults only `None`),
the argument-spec constants (tuples of literals), the type aliases of the annotations
(`Array = npt.NDArray[np.floating]`, ...) and `_DIMS_PASSED = set[...]()`.
What runs at a call: statements of the kinds below, calling only NumPy functions of an
explicit list, the module's own functions, a few built-ins and array methods of a list;
no statement writes into an argument (`x += ...`, `x[i] = ...`, `out=x`), except into a
helper's optional `out=None` parameter.

When the code generator learns a new construct, add it to the allow-lists here (each is
one named set) in the same change.

Cost: about as much as compiling (0.6-0.9x the compile time of the examples, 2.4x for a
10,000-operation program, most of it `ast.parse` of the 6.8 MB module; a process that
verifies many modules parses and walks the helpers they share once, about 30% less), so
`gradgen` does not run it on every compile; the test suite runs it on every module it renders
(tests/conftest.py), and the fuzzer (tests/fuzzing.py) on every module it compiles.
"""

from __future__ import annotations

import ast
import re
import tokenize
import warnings

__all__ = ["VerifyError", "verify_module", "NUMPY_FUNCTIONS", "NUMPY_VALUES", "BUILTINS",
           "ARRAY_METHODS", "ARRAY_ATTRIBUTES", "KEYWORDS"]


class VerifyError(Exception):
    """A generated module holds something the code generator never emits."""

    def __init__(self, line: int, col: int, message: str):
        self.line, self.col, self.message = line, col, message
        super().__init__(f"line {line}, column {col}: {message}")


# ---------------------------------------------------------------- the allow-lists

# Functions of NumPy the emitted code calls, as dotted names under the NumPy alias.
NUMPY_FUNCTIONS = frozenset({
    # elementwise (the ops' emission and the scheduler's in-place ufunc calls)
    "abs", "absolute", "add", "arctan", "copysign", "cos", "divide", "exp", "expm1", "log",
    "log1p", "logaddexp", "maximum", "minimum", "multiply", "negative", "power",
    "reciprocal", "sign", "sin", "sqrt", "subtract", "tan", "tanh", "where",
    "vdot",   # sum(a * b) as one BLAS dot (ops/reductions.py, sum_product_vdot)
    # reductions
    "max", "mean", "min", "prod", "sum", "trace", "var",
    # shapes, constants, copies
    "asarray", "broadcast_to", "concatenate", "copy", "diag", "diagonal", "eye",
    "flatnonzero", "full", "full_like", "ndim", "ones", "outer", "reshape", "result_type",
    "shape", "squeeze", "stack", "transpose", "tril", "zeros", "zeros_like", "array", "empty",
    "ascontiguousarray", "einsum",
    # linear algebra
    "linalg.cholesky", "linalg.det", "linalg.inv", "linalg.norm", "linalg.slogdet",
    "linalg.solve",
    # scans and triangular solves (ops/scans.py, ops/linalg.py and their helpers)
    "cumsum", "cumprod", "logaddexp.accumulate", "triu", "flip", "broadcast_arrays",
    # rounding and nan tests, in the special-function helpers (_gammaln, _xlogy, ...)
    "floor", "ceil", "rint", "isnan",
    # the decorator of the _sigmoid helper
    "errstate",
    # argument conversion and checking (dtypes)
    "float64", "float32", "issubdtype", "can_cast",
    # integer indexing: arange, and the scatter-add of a gather (the _scatter_add helper)
    "arange", "bincount", "add.at",
    # the workspace's `out=` forms (`--workspace`: np.matmul(X, V, out=ws("Q", N, M)))
    "matmul", "square",
})
# NumPy values (not called) the emitted code reads.
NUMPY_VALUES = frozenset({"pi", "e", "inf", "nan", "float64", "float32", "ndarray", "floating",
                          "dtype", "integer", "number", "bool_", "generic", "complexfloating",
                          "intp"})
# Built-in names the emitted code uses (called, or as the types of isinstance).
BUILTINS = frozenset({"float", "int", "complex", "bool", "len", "zip", "enumerate", "tuple",
                      "list", "str", "min", "max", "abs", "isinstance", "getattr", "hasattr",
                      "type", "set", "ValueError", "TypeError", "IndexError"})
# A loop of the emitted code: `for t in range(...)` or `reversed(range(...))` over sizes
# (names, integer literals, + - * // of them: no power, so no literal trip count of 10**12).
LOOP_BUILTINS = frozenset({"range", "reversed"})
_LOOP_BOUND_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
_MAX_LOOP_LITERAL = 2 ** 31
# Exceptions a `raise` may raise (called with a message).
EXCEPTIONS = frozenset({"ValueError", "TypeError", "IndexError"})
# Methods called on local values (arrays, the helpers' set of checked shapes).
ARRAY_METHODS = frozenset({"sum", "max", "min", "mean", "prod", "var", "reshape", "astype",
                           "copy", "ravel", "transpose", "dot",
                           "add", "clear", "any"})
# Attributes read off local values; `getattr` may only read these too.
ARRAY_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "T", "kind", "size"})
# Keyword arguments of calls.
KEYWORDS = frozenset({"axis", "keepdims", "dtype", "out", "copy", "k", "optimize", "order",
                      "over", "under", "divide", "invalid", "all", "reverse", "lower", "weights",
                      "minlength"})
# The array API target (`--target array-api`): functions of the namespace `xp` of the
# arguments (a local: `xp, device = _namespace(X, V)`, or a helper's first parameter),
# the values it holds, and what else its code reads and passes.
XP_FUNCTIONS = frozenset({
    "abs", "acos", "acosh", "add", "asin", "asinh", "atan", "atan2", "atanh", "ceil",
    "copysign", "cos", "cosh", "divide", "exp", "expm1", "floor", "isfinite", "isinf",
    "isnan", "log", "log1p", "log2", "log10", "logaddexp", "maximum", "minimum", "multiply",
    "negative", "pow", "round", "sign", "sin", "sinh", "sqrt", "square", "subtract", "tan",
    "tanh", "trunc", "where", "clip", "hypot",
    "max", "mean", "min", "prod", "sum", "var", "std", "cumulative_sum", "cumulative_prod",
    "all", "any", "argmax", "argmin",
    "arange", "asarray", "astype", "broadcast_arrays", "broadcast_to", "concat", "empty",
    "expand_dims", "eye", "flip", "moveaxis", "full", "full_like", "matrix_transpose", "matmul",
    "ones", "ones_like", "permute_dims", "reshape", "squeeze", "stack", "take", "tensordot",
    "tril", "triu", "zeros", "zeros_like", "result_type", "isdtype", "vecdot", "einsum",
    "linalg.cholesky", "linalg.det", "linalg.diagonal", "linalg.inv", "linalg.matrix_norm",
    "linalg.outer", "linalg.slogdet", "linalg.solve", "linalg.trace", "linalg.vector_norm",
    "linalg.eigh", "linalg.qr", "linalg.svd",
})
XP_VALUES = frozenset({"pi", "e", "inf", "nan", "float64", "float32", "int64", "bool"})
XP_ATTRIBUTES = frozenset({"device", "logabsdet", "sign", "mT", "at", "map_blocks"})
XP_KEYWORDS = frozenset({"device", "axes", "correction", "lower", "reverse", "drop_axis"})
# Methods of arrays the array-API helpers call: JAX's `x.at[i].set(v)` (_set), Dask's
# `rechunk` and `map_blocks` (_by_matrix: det and slogdet, which Dask's namespace lacks).
XP_METHODS = frozenset({"set", "rechunk", "map_blocks"})
# Python's math in an array-API module: numbers computed from sizes (`math.log(2 * N)`).
MATH_FUNCTIONS = frozenset({"exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan",
                            "tanh", "atan"})
MATH_VALUES = frozenset({"pi", "e", "inf", "nan"})
# The kinds of dtype `xp.isdtype` is asked about.
_DTYPE_KINDS = frozenset({"integral", "real floating", "bool", "numeric"})
# The module-level import of the array API target (array_api_compat, when installed).
XP_IMPORTS = ("array_namespace", "device_of")

# `--workspace`: the one class a module may define, the runtime's `Workspace` exactly
# (codegen/runtime.py, compared as a syntax tree), its methods the functions call (on
# their parameter `workspace`, and on `ws` of the private twins, which also call `ws`
# itself for a buffer), and the one keyword-only parameter (`workspace=None`).
WORKSPACE_METHODS = frozenset({"bind", "zeros", "fresh"})
WORKSPACE_KEYWORD = "workspace"
WORKSPACE_PARAMETER = "ws"

# Module-level state of the helpers, assigned `set()` at import.
HELPER_STATE = frozenset({"_DIMS_PASSED"})
# Values of np.errstate's keywords.
_ERRSTATE_VALUES = frozenset({"ignore", "warn", "raise", "call", "print", "log"})
# String arguments of float() that give the IEEE special values.
_FLOAT_STRINGS = frozenset({"inf", "-inf", "nan", "+inf"})
_EINSUM_SPEC = re.compile(r"[A-Za-z.,\->]*\Z")
# A dimension expression in a size check's message (`"3 * M"`, `"C // H"`): inert text.
_DIM_TEXT = re.compile(r"[\w ()+\-*/%]+")

_STATEMENTS = (ast.Expr, ast.Assign, ast.AugAssign, ast.Return, ast.Delete, ast.If, ast.For,
               ast.Raise, ast.Continue, ast.Break, ast.Pass, ast.FunctionDef)
_EXPRESSIONS = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call,
                ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Dict,
                ast.Name, ast.Constant, ast.JoinedStr, ast.FormattedValue)
# Leaf helper nodes that carry no code of their own.
_INERT = (ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context)
# What `_expr` makes of a node, by its class (`isinstance` with the tuples above, asked
# once a class): inert, an expression it checks, or one never emitted.
_INERT_KIND, _CHECKED, _NEVER = "inert", "checked", "never"
_EXPRESSION_KIND: dict[type, str] = {}


def _expression_kind(cls: type) -> str:
    kind = _INERT_KIND if issubclass(cls, _INERT) else \
        _CHECKED if issubclass(cls, _EXPRESSIONS) else _NEVER
    _EXPRESSION_KIND[cls] = kind
    return kind


def verify_module(source: str) -> None:
    """Raise `VerifyError` unless `source` holds only what the code generator emits.

    The text is parsed in parts, its top-level statements cut where a line starts after
    two blank lines (every module repeats the same helpers: a part seen before is not
    parsed again, and a helper verified before in the same module context not walked
    again). A cut the tokenizer would not make there (inside a string, brackets, after a
    backslash) leaves a part that does not parse: then, and for any error (its location),
    the whole text is parsed and verified as one."""
    _check_encoding(source)
    parts = _parts(source)
    if parts is not None:
        try:
            _Verifier(ast.Module([s for p in parts for s in p.body], []), parts).run()
            return
        except VerifyError:
            pass   # again on the whole text, for the error's location
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise VerifyError(e.lineno or 0, e.offset or 0, f"does not parse: {e.msg}") from None
    except (ValueError, MemoryError, RecursionError) as e:   # NUL bytes, far too deep
        raise VerifyError(0, 0, f"does not parse: {e}") from None
    _Verifier(tree).run()


class _Part:
    """One part of a module's text, parsed: its statements; for a lone function, its
    scope (made once) and the module contexts it passed the checks in."""

    def __init__(self, text: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.body = ast.parse(text).body
        self.scope: _Scope | None = None
        self.passed: set[tuple] = set()
        if len(self.body) == 1 and isinstance(self.body[0], ast.FunctionDef):
            self.scope = _Scope(self.body[0], None)


# A line at column 0 after two blank lines: where the generator starts a top-level part.
_CUT = re.compile(r"\n\n\n(?=[A-Za-z_@])")
_PARTS: dict[str, _Part] = {}   # text -> its part (bounded: cleared past _MAX_PARTS; only
#                                   parts of at most _MAX_PART_CHARS, so it stays small)
_MAX_PARTS = 4096
# The hashes of the part texts parsed once and not kept: a part is kept from its second
# sighting on. Most parts are a module's own functions, never seen again (8,570 of the
# 8,981 distinct parts of the op harness's 1,744 modules); kept, their syntax trees (some
# 150 objects each) made every full pass of the garbage collector in a long-lived process
# (a test worker) scan hundreds of thousands of objects, about 1 s each.
_SEEN_ONCE: set[int] = set()
_MAX_PART_CHARS = 20_000   # the helpers are some 2,000 characters each


def _parts(source: str) -> list[_Part] | None:
    """The module's parts, or None when one does not parse on its own."""
    texts, start = [], 0
    for m in _CUT.finditer(source):
        texts.append(source[start:m.start() + 1])
        start = m.end()
    texts.append(source[start:])
    parts = []
    for text in texts:
        part = _PARTS.get(text)
        if part is None:
            try:
                part = _Part(text)
            except (SyntaxError, ValueError, MemoryError, RecursionError):
                return None
            if len(text) <= _MAX_PART_CHARS:   # (a large part is rarely seen twice)
                _keep(text, part)
        parts.append(part)
    return parts


def _keep(text: str, part: _Part) -> None:
    """Keep `part` for its text if the text was seen before (`_SEEN_ONCE`)."""
    key = hash(text)
    if key not in _SEEN_ONCE:
        if len(_SEEN_ONCE) >= 16 * _MAX_PARTS:
            _SEEN_ONCE.clear()
        _SEEN_ONCE.add(key)
        return
    _SEEN_ONCE.discard(key)
    if len(_PARTS) >= _MAX_PARTS:
        _PARTS.clear()
    _PARTS[text] = part


def _check_encoding(source: str) -> None:
    """The text means the same as a UTF-8 file: no coding declaration in the first two
    lines names another codec. (Python reads a file in the declared codec: a comment
    `# coding: unicode_escape` turns `\\x0a` in a comment into a line of code that this
    parse of the text never sees.)"""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as e:
        line = source.count("\n", 0, e.start) + 1
        col = e.start - (source.rfind("\n", 0, e.start) + 1) + 1
        raise VerifyError(line, col, f"the text holds {source[e.start]!r}, which UTF-8 can "
                                     "not encode (a lone surrogate): it can not be written "
                                     "or parsed") from None
    lines = source.split("\n", 2)[:2]
    try:
        encoding, _ = tokenize.detect_encoding(
            iter([(line + "\n").encode("utf-8") for line in lines]).__next__)
    except (SyntaxError, StopIteration) as e:
        raise VerifyError(1, 1, f"a coding declaration Python does not accept ({e})") from None
    if encoding not in ("utf-8", "utf-8-sig"):
        raise VerifyError(1, 1, f"a coding declaration for {encoding!r}: a file of this text "
                                "would not be read as UTF-8")


def _fail(node: ast.AST, message: str):
    raise VerifyError(getattr(node, "lineno", 0), getattr(node, "col_offset", -1) + 1, message)


def _children(node: ast.AST) -> list[ast.AST]:
    """The child nodes of `node`, as `ast.iter_child_nodes` gives them (a list, without
    its two generators: the verifier visits every node of a module), but for the
    `expr_context` of names and subscripts, which is inert (`_INERT`) and read off the node
    where it matters (`node.ctx`)."""
    out = []
    fields = _FIELDS.get(node.__class__)
    if fields is None:
        fields = _FIELDS[node.__class__] = tuple(f for f in node._fields
                                                 if f not in _NO_CHILDREN)
    for name in fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            out.append(value)
        elif value.__class__ is list:
            out += [x for x in value if isinstance(x, ast.AST)]
    return out


# Fields of the syntax tree that never hold a child node to visit: identifiers, numbers,
# flags, and the inert load/store context.
_NO_CHILDREN = frozenset({"ctx", "id", "attr", "arg", "name", "asname", "module", "level",
                          "kind", "type_comment", "conversion", "is_async", "simple"})
_FIELDS: dict[type, tuple[str, ...]] = {}   # syntax tree class -> its fields to visit


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"] when node is a chain of attributes on a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class _Scope:
    """The names bound in one function (arguments, assignments, loops, nested defs)."""

    def __init__(self, fn: ast.FunctionDef, parent: _Scope | None):
        self.parent = parent
        self.fn = fn
        self.names: set[str] = set()
        self.functions: set[str] = set()
        self.called: set[str] = set()   # names called as functions (in nested defs too)
        self.loaded: set[str] = set()   # names read (in nested defs too)
        a = fn.args
        for arg in a.args + a.kwonlyargs + ([a.vararg] if a.vararg else []):
            self.names.add(arg.arg)
        # The caller's arrays: never written into (an `out=None` parameter is the
        # caller's request to be written into, so it is not one of them).
        optional = {x.arg for x in a.args[len(a.args) - len(a.defaults):]} if a.defaults \
            else set()
        self.inputs = {x.arg for x in a.args} - optional
        # Every node of the body once, by its class (one look-up a node: this walk sees
        # as many nodes as the checks do); what is not a syntax tree node (a constant's
        # value, a missing field's None, Global's names) is skipped as a class of no fields.
        names, loaded, called = self.names, self.loaded, self.called
        stack = list(fn.body)
        pop, push, extend = stack.pop, stack.append, stack.extend
        fields_of = _SCOPE_FIELDS
        while stack:
            node = pop()
            cls = node.__class__
            if cls is _NAME:
                if node.ctx.__class__ is _STORE:
                    names.add(node.id)
                else:
                    loaded.add(node.id)
                continue
            if cls is _FUNCTION:
                names.add(node.name)
                self.functions.add(node.name)
                inner = _Scope(node, self)
                called |= inner.called
                loaded |= inner.loaded
                continue   # its own scope
            if cls is _CALL and node.func.__class__ is _NAME:
                called.add(node.func.id)
            fields = fields_of.get(cls)
            if fields is None:
                fields = _scope_fields(cls)
            for name in fields:
                value = getattr(node, name, None)
                if value.__class__ is list:
                    extend(value)
                else:
                    push(value)
        # Calls of its own locals (the nested `poly` of `_erf`) call no module function.
        self.called -= self.names

    def binds(self, name: str) -> bool:
        s = self
        while s is not None:
            if name in s.names:
                return True
            s = s.parent
        return False

    def function(self, name: str) -> bool:
        s = self
        while s is not None:
            if name in s.names:
                return name in s.functions
            s = s.parent
        return False


_NAME, _STORE, _LOAD, _CALL, _FUNCTION = ast.Name, ast.Store, ast.Load, ast.Call, ast.FunctionDef
_CONSTANT = ast.Constant
_SCOPE_FIELDS: dict[type, tuple[str, ...]] = {}   # class -> the fields _Scope walks


def _scope_fields(cls: type) -> tuple[str, ...]:
    """The fields of a syntax tree class that may hold nodes (none for other classes)."""
    fields = tuple(f for f in cls._fields if f not in _NO_CHILDREN) \
        if issubclass(cls, ast.AST) else ()
    _SCOPE_FIELDS[cls] = fields
    return fields


# Built-in names an annotation may use.
_TYPE_NAMES = frozenset({"float", "int", "object", "tuple", "set"})


class _Names:
    """The module's facts (its NumPy alias, functions, state, built-in aliases) and what a
    name means in a scope. The verifier is built on it one job a class, each using the
    ones before it: names, expressions and calls, statements and functions, the module
    (`_Verifier`)."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.np: str | None = None
        self.npt: str | None = None          # the alias of numpy.typing (annotations)
        self.types: set[str] = set()         # module-level type aliases (`Array = ...`)
        self.xp: str | None = None   # the namespace's name in an array-API module
        self.math: str | None = None   # the alias of Python's math there
        self.functions: set[str] = set()   # module-level defs
        self.state: set[str] = set()       # module-level assigned names
        self.aliases: dict[str, str] = {}  # module-level alias -> the built-in it names
        self.called: set[str] = set()      # module functions called by name somewhere
        self.allowed_strings: set[int] = set()   # ids of Constant str nodes in allowed places
        self.workspace: str | None = None   # the name of the Workspace class, if defined

    def _is_workspace(self, cls: ast.ClassDef) -> bool:
        """Whether `cls` is the runtime's Workspace, its names as this module has them
        (the NumPy alias, the built-ins' aliases, its own name)."""
        from .codegen.runtime import WORKSPACE

        canonical = ast.parse(WORKSPACE).body[0]
        names = {**self.aliases, cls.name: "Workspace"}
        if self.np is not None:
            names[self.np] = "np"
        mine = ast.parse(ast.unparse(cls)).body[0]   # (a copy)
        for n in ast.walk(mine):
            if isinstance(n, ast.Name):
                n.id = names.get(n.id, n.id)
        mine.name = "Workspace"
        return ast.dump(mine) == ast.dump(canonical)

    def _builtin(self, name: str, scope: _Scope) -> str | None:
        """The built-in that `name` means here (through a module-level alias such as
        `len_ = len`), or None when it means something else."""
        if scope.binds(name):
            return None
        if name in self.aliases:
            return self.aliases[name]
        return name if name in BUILTINS and name not in self.functions else None

    def _name(self, node: ast.Name, scope: _Scope, called: bool = False) -> None:
        name = node.id
        if name in scope.names and node.ctx.__class__ is _LOAD:   # a local, read: most names
            if name in scope.functions and not called:
                _fail(node, f"the function {name!r} used as a value")
            return
        if _is_dunder(name) and not scope.binds(name):
            _fail(node, f"the name {name!r}")
        if not isinstance(node.ctx, ast.Load):
            _fail(node, f"assignment to {name!r} inside an expression")
        if scope.binds(name):
            if scope.function(name) and not called:
                _fail(node, f"the function {name!r} used as a value")
            return
        if name == self.np or name == self.math:
            _fail(node, f"the module {name!r} used as a value")
        if name in self.functions:
            if not called:
                _fail(node, f"the function {name!r} used as a value")
            return
        if name in self.state:
            return
        if name in BUILTINS or self.xp is not None and name in ("slice", "Ellipsis"):
            return
        _fail(node, f"the name {name!r} is not defined in the module (and is not one of the "
                    "built-ins generated code uses)")


class _Expressions(_Names):
    """Expressions: names, constants, attributes, comparisons and calls."""

    def _expr(self, root: ast.AST, scope: _Scope) -> None:
        """Every node under `root` (iteratively: generated expressions may be deep)."""
        stack = [root]
        pop = stack.pop
        kinds = _EXPRESSION_KIND
        while stack:
            node = pop()
            cls = node.__class__
            if cls is _NAME:   # (the most frequent node, first)
                self._name(node, scope)
                continue
            kind = kinds.get(cls)
            if kind is None:
                kind = _expression_kind(cls)
            if kind is _INERT_KIND:
                continue
            if kind is _NEVER:
                _fail(node, f"expression {type(node).__name__} (never emitted)")
            if cls is _CONSTANT:
                self._constant(node)
            elif isinstance(node, ast.Call):
                stack.extend(self._call(node, scope))
            elif isinstance(node, ast.Attribute):
                stack.extend(self._attribute(node, scope))
            elif isinstance(node, (ast.JoinedStr, ast.FormattedValue)):
                _fail(node, "an f-string outside an error message")
            elif isinstance(node, ast.Compare):
                if isinstance(node.left, ast.Attribute) and node.left.attr == "__class__":
                    # `dim.__class__ is int` in the _dims helper: the class, compared only
                    if not (len(node.ops) == 1 and isinstance(node.ops[0], (ast.Is, ast.IsNot))
                            and isinstance(node.comparators[0], ast.Name)
                            and self._builtin(node.comparators[0].id, scope) in BUILTINS):
                        _fail(node.left, "`.__class__` other than in `x.__class__ is int`")
                    stack.append(node.left.value)
                else:
                    stack.append(node.left)
                for c in node.comparators:   # comparing with a string does nothing
                    if isinstance(c, ast.Constant) and isinstance(c.value, str):
                        self.allowed_strings.add(id(c))
                stack.extend(node.comparators)
            else:
                stack += _children(node)

    def _constant(self, node: ast.Constant) -> None:
        v = node.value
        if v is None or v is Ellipsis or type(v) in (bool, int, float):
            return
        if isinstance(v, str):
            if id(node) in self.allowed_strings:
                return
            _fail(node, "a string constant where the generator never writes one")
        _fail(node, f"a constant of type {type(v).__name__}")

    def _call(self, node: ast.Call, scope: _Scope) -> list[ast.AST]:
        """Check the callee; return the nodes left to check."""
        func = node.func
        todo = self._call_keywords(node, scope)
        args = self._call_args(node, scope)
        if isinstance(func, ast.Name):
            self._call_name(node, func, args, scope)
            return todo + args
        dotted = _dotted(func)
        if dotted is not None and dotted[0] == self.np and not scope.binds(self.np):
            self._call_numpy(func, dotted, args)
        elif dotted is not None and dotted[0] == self.math and not scope.binds(self.math):
            if len(dotted) != 2 or dotted[1] not in MATH_FUNCTIONS:
                _fail(func, f"a call of {'.'.join(dotted)} (not a math function generated "
                            "code uses)")
        elif dotted is not None and len(dotted) > 1 and self._is_xp(dotted[0], scope):
            fname = ".".join(dotted[1:])
            if fname not in XP_FUNCTIONS:
                _fail(func, f"a call of {dotted[0]}.{fname} (not an array API function "
                            "generated code uses)")
            if fname == "einsum" and args and isinstance(args[0], ast.Constant) \
                    and isinstance(args[0].value, str) and _EINSUM_SPEC.match(args[0].value):
                self.allowed_strings.add(id(args[0]))
            if fname == "isdtype" and len(args) == 2 and isinstance(args[1], ast.Constant) \
                    and args[1].value in _DTYPE_KINDS:
                self.allowed_strings.add(id(args[1]))
        elif self.xp is not None and isinstance(func, ast.Attribute) \
                and func.attr == "__array_namespace__" and not node.args:
            todo.append(func.value)   # x.__array_namespace__() in the _namespace helper
        elif isinstance(func, ast.Attribute):
            todo.append(self._call_method(func, scope))
            if func.attr == "zeros" and self.workspace is not None and args and \
                    isinstance(func.value, ast.Name) and func.value.id == WORKSPACE_PARAMETER \
                    and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) \
                    and args[0].value.isidentifier() and not _is_dunder(args[0].value):
                self.allowed_strings.add(id(args[0]))   # ws.zeros("dx", N)
            if func.attr == "map_blocks" and self.xp is not None and args \
                    and isinstance(args[0], ast.Name) and scope.function(args[0].id):
                # Dask calls the helper's own nested function on each block (_by_matrix)
                self._name(args[0], scope, called=True)
                args = args[1:]
        else:
            _fail(func, "a call of a computed value")
        return todo + args

    def _is_xp(self, name: str, scope: _Scope) -> bool:
        """Whether `name` is the array API namespace here (a local of that name)."""
        return self.xp is not None and name == self.xp and scope.binds(name)

    def _call_keywords(self, node: ast.Call, scope: _Scope) -> list[ast.AST]:
        """Allowed keywords, never `out=` an argument; their values are left to check."""
        todo: list[ast.AST] = []
        for k in node.keywords:
            if k.arg is None:
                _fail(node, "a call with **keyword arguments")
            if k.arg not in KEYWORDS and not (self.xp is not None and k.arg in XP_KEYWORDS):
                _fail(k.value, f"the keyword argument {k.arg!r}")
            if k.arg == "out" and isinstance(k.value, ast.Name) and k.value.id in scope.inputs:
                _fail(k.value, f"a result written into the argument {k.value.id!r}")
            todo.append(k.value)
        return todo

    def _call_args(self, node: ast.Call, scope: _Scope) -> list[ast.AST]:
        """The positional arguments, a `*args` unwrapped to the name it is."""
        star = scope.fn.args.vararg
        for a in node.args:
            # only a helper's own `*args`, passed on whole (`np.result_type(*arrays)`)
            if isinstance(a, ast.Starred) and not (
                    star is not None and isinstance(a.value, ast.Name)
                    and a.value.id == star.arg):
                _fail(a, "a call with *arguments")
        # (a `*args` is checked by the caller as the name it is)
        return [a.value if isinstance(a, ast.Starred) else a for a in node.args]

    def _call_name(self, node: ast.Call, func: ast.Name, args: list[ast.AST],
                   scope: _Scope) -> None:
        """A call by name: a local function, a module function or an allowed built-in."""
        name = func.id
        if scope.binds(name):
            if name == WORKSPACE_PARAMETER and self.workspace is not None and \
                    scope.parent is None and name in scope.inputs and args and \
                    isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) \
                    and args[0].value.isidentifier() and not _is_dunder(args[0].value):
                self.allowed_strings.add(id(args[0]))   # ws("Q", N, M): a buffer by name
            elif not scope.function(name):
                _fail(func, f"a call of the local value {name!r}")
        elif name in self.functions:
            for a in args:   # _expect("x", x, shape): an argument's name; _solve("w", 0,
                # "3 * M", "M", ...): a dimension expression (names, numbers, operators)
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and (
                        a.value.isidentifier() and not _is_dunder(a.value)
                        or not a.value.isidentifier() and _DIM_TEXT.fullmatch(a.value)):
                    self.allowed_strings.add(id(a))
        elif self.xp is not None and name in XP_IMPORTS:
            pass   # array_api_compat's array_namespace and device (in _namespace)
        elif self.xp is not None and self.aliases.get(name, name) == "slice":
            pass   # the static index of _set: (slice(None), 0)
        elif self.aliases.get(name, name) in BUILTINS:
            self._call_builtin(node, self.aliases.get(name, name), args)
        else:
            _fail(func, f"a call of {name!r} (not a module function or an allowed "
                        "built-in)")
        self._name(func, scope, called=True)

    def _call_builtin(self, node: ast.Call, name: str, args: list[ast.AST]) -> None:
        """The arguments a built-in may take as strings (and `type` makes no class)."""
        if name in ("getattr", "hasattr"):
            if len(args) not in (2, 3) or not (
                    isinstance(args[1], ast.Constant)
                    and (args[1].value in ARRAY_ATTRIBUTES or self.xp is not None
                         and args[1].value in XP_ATTRIBUTES | {"__array_namespace__"})):
                _fail(node, "getattr of a name that is not a constant array attribute")
            self.allowed_strings.add(id(args[1]))
        elif name == "type" and len(args) != 1:
            _fail(node, "type() with more than one argument (it would make a class)")
        elif name == "float" and args and isinstance(args[0], ast.Constant) \
                and args[0].value in _FLOAT_STRINGS:
            self.allowed_strings.add(id(args[0]))

    def _call_numpy(self, func: ast.AST, dotted: list[str], args: list[ast.AST]) -> None:
        """`np.<name>(...)`: a NumPy function of the list (an einsum spec as a string)."""
        fname = ".".join(dotted[1:])
        if fname not in NUMPY_FUNCTIONS:
            _fail(func, f"a call of {self.np}.{fname} (not a NumPy function generated "
                        "code uses)")
        if fname == "einsum" and args and isinstance(args[0], ast.Constant) \
                and isinstance(args[0].value, str) and _EINSUM_SPEC.match(args[0].value):
            self.allowed_strings.add(id(args[0]))

    def _call_method(self, func: ast.Attribute, scope: _Scope) -> ast.AST:
        """`value.method(...)`: an array method of the list on a local value; returns the
        receiver, left to check."""
        if isinstance(func.value, ast.Name):   # an undefined receiver first
            self._name(func.value, scope, called=True)
        if func.attr in WORKSPACE_METHODS and self.workspace is not None and \
                isinstance(func.value, ast.Name) and scope.parent is None and \
                func.value.id in (WORKSPACE_KEYWORD, WORKSPACE_PARAMETER):
            pass   # workspace.bind(...), ws.zeros("dx", N), ws.fresh(...)
        elif func.attr not in ARRAY_METHODS and not (self.xp is not None
                                                     and func.attr in XP_METHODS):
            _fail(func, f"a call of the method {func.attr!r} (not an array method "
                        "generated code uses)")
        recv = func.value
        if isinstance(recv, ast.Name) and not scope.binds(recv.id) and (
                recv.id == self.np or recv.id in self.functions or recv.id in BUILTINS):
            _fail(func, f"a method call on {recv.id!r}")
        return recv

    def _attribute(self, node: ast.Attribute, scope: _Scope) -> list[ast.AST]:
        dotted = _dotted(node)
        if dotted is not None and dotted[0] == self.np and not scope.binds(self.np):
            fname = ".".join(dotted[1:])
            if fname not in NUMPY_VALUES:
                _fail(node, f"{self.np}.{fname} (not a NumPy value generated code reads)")
            return []
        if dotted is not None and dotted[0] == self.math and not scope.binds(self.math):
            if len(dotted) != 2 or dotted[1] not in MATH_VALUES:
                _fail(node, f"{'.'.join(dotted)} (not a math value generated code reads)")
            return []
        if dotted is not None and len(dotted) > 1 and self._is_xp(dotted[0], scope):
            if ".".join(dotted[1:]) not in XP_VALUES:
                _fail(node, f"{'.'.join(dotted)} (not an array API value generated code "
                            "reads)")
            return []
        if self.xp is not None and node.attr in XP_ATTRIBUTES and isinstance(node.ctx, ast.Load):
            return [node.value]
        if node.attr == "__name__" and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Name) \
                and self._builtin(node.value.func.id, scope) == "type":   # in a message
            return [node.value]
        if _is_dunder(node.attr) or node.attr.startswith("_"):
            _fail(node, f"the attribute {node.attr!r}")
        if node.attr not in ARRAY_ATTRIBUTES:
            _fail(node, f"the attribute {node.attr!r} (not an array attribute generated "
                        "code reads)")
        if not isinstance(node.ctx, ast.Load):
            _fail(node, f"assignment to the attribute {node.attr!r}")
        return [node.value]


class _Statements(_Expressions):
    """Function definitions and the statements of their bodies."""

    def _function(self, fn: ast.FunctionDef, parent: _Scope | None,
                  scope: _Scope | None = None) -> None:
        if _is_dunder(fn.name):
            _fail(fn, f"function name {fn.name!r}")
        if parent is not None:
            if fn.decorator_list:
                _fail(fn, "a decorator on a nested function")
            if parent.parent is not None or not parent.fn.name.startswith("_"):
                _fail(fn, "a nested function outside a helper (`_name`) function")
        for dec in fn.decorator_list:
            self._decorator(dec)
        a = fn.args
        if a.posonlyargs or a.kwarg or a.kwonlyargs and not (
                self.workspace is not None and parent is None
                and [x.arg for x in a.kwonlyargs] == [WORKSPACE_KEYWORD]
                and all(isinstance(d, ast.Constant) and d.value is None for d in a.kw_defaults)):
            _fail(fn, "function arguments other than plain positional ones (and "
                      "`workspace=None` where the module has its Workspace)")
        if a.vararg is not None and a.vararg.annotation is not None:
            _fail(fn, "an annotation of *args in a generated function")
        for x in a.args + a.kwonlyargs:   # (evaluated when the function is defined)
            if x.annotation is not None:
                self._type(x.annotation)
        if fn.returns is not None:
            self._type(fn.returns)
        if a.vararg is not None and parent is None and not fn.name.startswith("_"):
            _fail(fn, "*args on a function that is not a helper")
        for d in a.defaults:
            if not (isinstance(d, ast.Constant) and d.value is None):
                _fail(d, "a default argument value other than None")
        # (Arguments and locals may have dunder names, as a user's may: a local
        # `__builtins__` changes nothing; a dunder name that is not local is refused.)
        scope = scope or _Scope(fn, parent)
        # (A local named like a built-in is harmless unless the function calls that
        # built-in, which is then a call of a local value: refused below.)
        for name in scope.names:
            if name == self.np or name == self.math or name in self.called \
                    or name in self.state:
                _fail(fn, f"{name!r} in function {fn.name!r} shadows the module-level "
                          f"name {name!r}")
        self._body(fn.body, scope, docstring=True)

    def _decorator(self, dec: ast.AST) -> None:
        if not (isinstance(dec, ast.Call) and _dotted(dec.func) == [self.np, "errstate"]
                and not dec.args):
            _fail(dec, "a decorator other than @np.errstate(...)")
        for k in dec.keywords:
            if k.arg not in KEYWORDS or not (isinstance(k.value, ast.Constant)
                                             and k.value.value in _ERRSTATE_VALUES):
                _fail(dec, "an np.errstate argument that is not an error mode")
            self.allowed_strings.add(id(k.value))

    def _body(self, body: list[ast.stmt], scope: _Scope, docstring: bool = False) -> None:
        for i, stmt in enumerate(body):
            if i == 0 and docstring and _is_docstring(stmt):
                continue
            self._statement(stmt, scope)

    def _statement(self, stmt: ast.stmt, scope: _Scope) -> None:
        if not isinstance(stmt, _STATEMENTS):
            _fail(stmt, f"statement {type(stmt).__name__} (never emitted)")
        if isinstance(stmt, ast.FunctionDef):
            self._function(stmt, scope)
        elif isinstance(stmt, ast.Expr):
            if _is_docstring(stmt):
                _fail(stmt, "a string statement outside a docstring position")
            if not isinstance(stmt.value, ast.Call):
                _fail(stmt, "an expression statement that is not a call")
            self._expr(stmt.value, scope)
        elif isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                self._target(t, scope)
            self._expr(stmt.value, scope)
        elif isinstance(stmt, ast.AugAssign):
            if isinstance(stmt.target, ast.Name) and stmt.target.id in scope.inputs:
                _fail(stmt, f"an in-place update of the argument {stmt.target.id!r}")
            self._target(stmt.target, scope, tuples=False)
            self._expr(stmt.value, scope)
        elif isinstance(stmt, ast.Return):
            if stmt.value is not None:
                self._expr(stmt.value, scope)
        elif isinstance(stmt, ast.Delete):
            for t in stmt.targets:
                if not isinstance(t, ast.Name):
                    _fail(t, "`del` of something other than a local name")
        elif isinstance(stmt, ast.If):
            self._expr(stmt.test, scope)
            self._body(stmt.body, scope)
            self._body(stmt.orelse, scope)
        elif isinstance(stmt, ast.For):
            if stmt.orelse:
                _fail(stmt, "a for-else")
            self._target(stmt.target, scope)
            self._loop_range(stmt.iter, scope)
            self._body(stmt.body, scope)
        elif isinstance(stmt, ast.Raise):
            self._raise(stmt, scope)

    def _loop_range(self, it: ast.AST, scope: _Scope) -> None:
        """The iterable of a loop; range(...) only of sizes, possibly reversed(...)."""
        def builtin(node, name):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and not node.keywords) or scope.binds(node.func.id):
                return False
            called = self.aliases.get(node.func.id, node.func.id)
            return called == name and node.func.id not in self.functions
        if builtin(it, "reversed") and len(it.args) == 1:
            it = it.args[0]
        if not builtin(it, "range"):   # (the helpers' loops over their arguments)
            self._expr(it, scope)
            return
        if not 1 <= len(it.args) <= 3:
            _fail(it, "range() of other than 1 to 3 sizes")
        for bound in it.args:
            for node in ast.walk(bound):
                if isinstance(node, ast.BinOp) and type(node.op) in _LOOP_BOUND_OPS or \
                        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) or \
                        isinstance(node, (ast.operator, ast.unaryop, ast.expr_context)):
                    continue
                if isinstance(node, ast.Constant) and type(node.value) is int \
                        and abs(node.value) <= _MAX_LOOP_LITERAL:
                    continue
                if isinstance(node, ast.Name):
                    self._expr(node, scope)
                    continue
                _fail(node, "a loop bound other than a size (names, integers, + - * //)")

    def _raise(self, stmt: ast.Raise, scope: _Scope) -> None:
        exc = stmt.exc
        if stmt.cause is not None or not (
                isinstance(exc, ast.Call) and isinstance(exc.func, ast.Name)
                and self._builtin(exc.func.id, scope) in EXCEPTIONS and not exc.keywords):
            _fail(stmt, "a raise of something other than ValueError/TypeError(message)")
        for arg in exc.args:   # the message: a string or an f-string
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.allowed_strings.add(id(arg))
            elif isinstance(arg, ast.JoinedStr):
                for part in arg.values:
                    if isinstance(part, ast.Constant):
                        self.allowed_strings.add(id(part))
                    elif isinstance(part, ast.FormattedValue):
                        if part.format_spec is not None:
                            _fail(part, "a format spec in an error message")
                        self._expr(part.value, scope)
                    else:
                        _fail(part, "an unexpected part of an f-string")
            else:
                _fail(arg, "an error message that is not a string or an f-string")

    def _target(self, t: ast.AST, scope: _Scope, tuples: bool = True) -> None:
        if isinstance(t, ast.Name):   # a local (module-level names are checked in run)
            return
        if tuples and isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self._target(e, scope)
            return
        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) \
                and t.value.id in scope.inputs:
            _fail(t, f"a write into the argument {t.value.id!r}")
        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) \
                and scope.binds(t.value.id) and not scope.function(t.value.id):
            self._expr(t.slice, scope)
            return
        _fail(t, f"assignment to {type(t).__name__} (only local names and items of local "
                 "arrays are assigned)")


class _Verifier(_Statements):
    """The whole module: its top-level statements, then every function in it (`parts`:
    the parts the module's statements come from, when parsed in parts)."""

    def __init__(self, tree: ast.Module, parts: list[_Part] | None = None):
        super().__init__(tree)
        self.parts = parts or []
        self.import_calls: set[str] = set()   # the helpers called at import

    def run(self) -> None:
        body = self.tree.body
        bound: dict[str, ast.AST] = {}
        for i, stmt in enumerate(body):
            if i == 0 and _is_docstring(stmt):
                continue
            if isinstance(stmt, ast.Import) and stmt.names and stmt.names[0].name == "math" \
                    and len(stmt.names) == 1 and self.math is None and self.np is None:
                self.math = name = stmt.names[0].asname or "math"   # (array API modules)
            elif isinstance(stmt, ast.Import):
                name = self._import(stmt)
            elif isinstance(stmt, ast.Try):
                self._xp_import(stmt)
                for n in XP_IMPORTS:
                    if n in bound:
                        _fail(stmt, f"module-level name {n!r} is bound twice")
                    bound[n] = stmt
                    self.state.add(n)
                continue
            elif isinstance(stmt, ast.FunctionDef):
                name = stmt.name
                self.functions.add(name)
            elif isinstance(stmt, ast.ClassDef) and self.workspace is None \
                    and self._is_workspace(stmt):
                name = self.workspace = stmt.name
            elif isinstance(stmt, ast.Assign):
                name = self._module_assign(stmt)
                self.state.add(name)
            elif _is_docstring(stmt):
                _fail(stmt, "a string statement outside a docstring position")
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                self._import_call(stmt.value, bound)
                continue
            else:
                _fail(stmt, f"statement {type(stmt).__name__} at module level "
                            "(only the docstring, `import numpy as np`, function definitions, "
                            "the argument-spec constants and the call of a helper without "
                            "arguments are emitted there)")
            if _is_dunder(name):
                _fail(stmt, f"module-level name {name!r} (dunder names are never emitted)")
            if name in bound:
                _fail(stmt, f"module-level name {name!r} is bound twice (line "
                            f"{bound[name].lineno} and here): the later one would replace "
                            "the earlier")
            bound[name] = stmt
        if self.np is None and self.xp is None:
            _fail(self.tree, "the module does not import numpy")
        if self.math is not None and self.xp is None:
            _fail(self.tree, "an import of math outside an array API module")
        made = {id(p.scope.fn): p for p in self.parts if p.scope is not None}
        scopes = [made[id(stmt)].scope if id(stmt) in made else _Scope(stmt, None)
                  for stmt in body if isinstance(stmt, ast.FunctionDef)]
        # The module functions that functions call (the helpers): no local may shadow them.
        self.called = set().union(*(s.called for s in scopes)) & self.functions
        # Nor may a module-level name shadow a built-in that some function uses.
        used = set().union(*(s.loaded - s.names for s in scopes)) & BUILTINS   # not locals
        for name in sorted(used & set(bound)):
            _fail(bound[name], f"module-level name {name!r} shadows a built-in the module uses")
        context = (self.np, self.xp, self.math, frozenset(self.functions), frozenset(self.state),
                   frozenset(self.aliases.items()), frozenset(self.called))
        for scope in scopes:
            part = made.get(id(scope.fn))
            if part is not None and context in part.passed:
                continue   # the same function passed in the same module context
            self._function(scope.fn, None, scope)
            if part is not None:
                part.passed.add(context)

    def _import_call(self, call: ast.Call, bound: dict[str, ast.AST]) -> None:
        """`_helper()` at module level (runs at import): a private function defined above,
        that takes no parameters, called once without arguments. Its body is checked
        like any function's, so it can do nothing a call of the module could not."""
        func = call.func
        name = func.id if isinstance(func, ast.Name) else None
        fn = bound.get(name) if name is not None else None
        if not (isinstance(fn, ast.FunctionDef) and name.startswith("_") and not _is_dunder(name)
                and not call.args and not call.keywords and not fn.decorator_list
                and not (fn.args.args or fn.args.posonlyargs or fn.args.kwonlyargs
                         or fn.args.vararg or fn.args.kwarg)):
            _fail(call, "a module-level call other than that of a private helper defined "
                        "above it, without parameters or arguments")
        if name in self.import_calls:
            _fail(call, f"a second module-level call of {name!r}")
        self.import_calls.add(name)

    def _xp_import(self, stmt: ast.Try) -> None:
        """The array API target's import, exactly: `try: from array_api_compat import
        array_namespace; from array_api_compat import device as device_of` `except
        ImportError: array_namespace = device_of = None`. The namespace is then the name
        `xp` (a local of each function and the first parameter of each helper)."""
        def bad():
            _fail(stmt, "a try statement other than the array API target's import")
        if self.xp is not None or self.np is not None or stmt.orelse or stmt.finalbody \
                or len(stmt.handlers) != 1 or len(stmt.body) != 2:
            bad()
        wanted = [("array_namespace", None), ("device", "device_of")]
        for imp, (name, asname) in zip(stmt.body, wanted):
            if not (isinstance(imp, ast.ImportFrom) and imp.module == "array_api_compat"
                    and imp.level == 0 and len(imp.names) == 1
                    and imp.names[0].name == name and imp.names[0].asname == asname):
                bad()
        h = stmt.handlers[0]
        if not (isinstance(h.type, ast.Name) and h.type.id == "ImportError" and h.name is None
                and len(h.body) == 1 and isinstance(h.body[0], ast.Assign)):
            bad()
        a = h.body[0]
        if not ([getattr(t, "id", None) for t in a.targets] == list(XP_IMPORTS)
                and isinstance(a.value, ast.Constant) and a.value.value is None):
            bad()
        self.xp = "xp"

    def _import(self, stmt: ast.Import) -> str:
        """`import numpy as np`, then (for the annotations) `import numpy.typing as npt`."""
        if len(stmt.names) != 1:
            _fail(stmt, "an import of more than one module")
        alias = stmt.names[0]
        if alias.name == "numpy.typing" and alias.asname and self.np is not None \
                and self.npt is None and not self.functions:
            self.npt = alias.asname
            return alias.asname
        if self.np is not None:
            _fail(stmt, "a second import (the module imports numpy once)")
        if alias.name != "numpy":
            _fail(stmt, "an import of something other than numpy")
        self.np = alias.asname or "numpy"
        return self.np

    def _type(self, node: ast.AST) -> None:
        """An annotation or a type alias: the module's type aliases, `float`, `int`,
        `object`, `tuple[...]`, `set[...]`, `np.floating`, `np.integer`,
        `npt.NDArray[...]`, their unions `a | b` and `...` in a tuple."""
        if isinstance(node, ast.Name) and (
                node.id in self.types or self.aliases.get(node.id, node.id) in _TYPE_NAMES
                or node.id == self.workspace) or isinstance(node, ast.Constant) and (
                node.value is None and self.workspace is not None):   # `Workspace | None`
            return
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                node.value.id == self.np and node.attr in ("floating", "integer")
                or node.value.id == self.npt and node.attr == "NDArray"):
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            self._type(node.left)
            self._type(node.right)
            return
        if isinstance(node, ast.Subscript) and (
                isinstance(node.value, ast.Name)
                and self.aliases.get(node.value.id, node.value.id) in ("tuple", "set")
                or isinstance(node.value, ast.Attribute) and _dotted(node.value) == [
                    self.npt, "NDArray"]):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for item in items:
                if not (isinstance(item, ast.Constant) and item.value is Ellipsis):
                    self._type(item)
            return
        _fail(node, "an annotation that is not one of the types generated code writes")

    def _module_assign(self, stmt: ast.Assign) -> str:
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            _fail(stmt, "a module-level assignment to something other than one name")
        name = stmt.targets[0].id
        value = stmt.value
        if isinstance(value, ast.Name) \
                and (value.id in BUILTINS | LOOP_BUILTINS or value.id in _TYPE_NAMES) \
                and name != value.id and not _is_dunder(name):
            # `len_ = len`: a built-in under another name, because a user's entry point
            # takes its own; bound before any function is defined (so before the user's).
            if self.functions:
                _fail(stmt, f"the alias {name!r} of a built-in after a function definition")
            self.aliases[name] = value.id
            return name
        func = value.func if isinstance(value, ast.Call) else None
        if isinstance(func, ast.Subscript):   # `set[tuple[object, object]]()`, typed
            self._type(func)
            func = func.value
        if isinstance(func, ast.Name) and self.aliases.get(func.id, func.id) == "set":
            if value.args or value.keywords or not name.startswith("_"):
                _fail(stmt, f"helper state {name!r} is not a private name assigned `set()`")
            return name
        if name in HELPER_STATE:
            _fail(stmt, f"helper state {name!r} is not assigned `set()`")
        if not name.startswith("_") and not self.functions and (
                isinstance(value, (ast.Attribute, ast.Subscript, ast.BinOp))):
            self._type(value)   # a type alias of the annotations (`Array = npt.NDArray[...]`)
            self.types.add(name)
            return name
        if not name.startswith("_"):
            _fail(stmt, f"a module-level assignment to {name!r} (only the helpers' state and "
                        "the argument-spec constants `_..._ARGS` are assigned at import)")
        self._spec_literal(value)
        return name

    def _spec_literal(self, value: ast.AST) -> None:
        """(("x", ("N", 3, None)), ...): argument names and declared dimensions (and "int"
        after those of an Index argument)."""
        def bad(node):
            _fail(node, "a module-level constant that is not an argument spec "
                        "(a tuple of (name, (dimension, ...)) literals)")
        if not isinstance(value, ast.Tuple):
            bad(value)
        for item in value.elts:
            if not (isinstance(item, ast.Tuple) and len(item.elts) in (2, 3)):
                bad(item)
            if len(item.elts) == 3 and not (isinstance(item.elts[2], ast.Constant)
                                            and item.elts[2].value == "int"):
                bad(item.elts[2])
            name, dims = item.elts[:2]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)
                    and name.value.isidentifier()):
                bad(name)
            if not isinstance(dims, ast.Tuple):
                bad(dims)
            for d in dims.elts:
                if not isinstance(d, ast.Constant):
                    bad(d)
                v = d.value
                ok = v is None or (type(v) is int and v >= 0) or (
                    isinstance(v, str) and v.isidentifier())
                if not ok:
                    bad(d)
