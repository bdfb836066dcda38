"""The one table of operations, and of the built-in functions of the language.

An `OpDef` holds everything about an IR operation: arity, traits, shape rule, emission
(per target where targets differ), VJP and JVP rules, its named rewrite rules (`@rewrite`,
applied by gradgen/passes/rules.py) and the input domain its tests draw from. A `Builtin` is a
function of the source language: either an op itself or a lowering to ops (`softmax`,
`logsumexp`). Nothing outside `gradgen/ops/` branches on an op's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..dims import (  # noqa: F401  (the precedence table, re-exported for the ops)
    PREC_ADD,
    PREC_ATOM,
    PREC_CALL,
    PREC_CMP,
    PREC_LOWEST,
    PREC_MUL,
    PREC_NEG,
    PREC_POW,
)
from ..errors import InternalError

# Input domains for tests: how to draw values where an op is smooth.
REAL, POSITIVE, UNIT, NONZERO = "real", "positive", "unit", "nonzero"
# Domains of square matrices (shape (..., n, n)), for the linear algebra ops:
#   INVERTIBLE: well conditioned, e.g. I + 0.3 * R / sqrt(n) with R standard normal (inv,
#     det, logdet, solve); det's sign may be either.
#   SPD: symmetric positive definite and well conditioned, e.g. R @ R.T / n + I (cholesky).
#     cholesky reads A as symmetric, so its finite-difference tests perturb A symmetrically
#     (A + eps * (V + V.T) / 2) or compose it with a symmetric expression of the Params.
INVERTIBLE, SPD = "invertible", "spd"


@dataclass(frozen=True)
class OpDef:
    """Everything about one IR operation."""

    name: str
    nargs: int | None
    shape: Callable[..., Any]                 # (arg nodes, **attrs) -> shape
    # Emission: (printer, node) -> (code, prec), through the printer's methods for anything
    # the target spells its own way; a dict {target: rule, "default": rule} where targets
    # need different code (see `emitter`).
    emit: Callable[..., tuple[str, int]] | dict | None = None
    stmt: Callable[..., list[str]] | dict | None = None   # (printer, node, target) -> lines
    # For a statement op whose result is argument 0 with some entries written (`update`):
    # (printer, node, target) -> the lines that write them into `target` when it already
    # holds argument 0's value. The scheduler uses it, instead of `stmt` (which copies
    # argument 0 first), when argument 0 is a buffer of the function that dies here.
    write: Callable[..., list[str]] | None = None
    vjp: Callable[..., tuple] | None = None   # (g, node) -> one cotangent (or None) per arg
    jvp: Callable[..., Any] | None = None     # (tangents, node) -> tangent or None
    # Batched JVP for non-elementwise ops: tangents carry one extra *leading* axis (a batch
    # of directions, as in a Jacobian); (tangents, node) -> batched tangent or None.
    # Elementwise ops need none: their JVP broadcasts over the batch axis as it is.
    vmap: Callable[..., Any] | None = None
    # Rewrite rules rooted at this op, in the order they are tried (`@rewrite` appends to
    # it): applied by the rule engine, gradgen/passes/rules.py.
    rules: list = field(default_factory=list, compare=False)
    # "elementwise", "linear", "nondiff", "leaf", "shape", ...; those the IR and the passes
    # read: "constant" (the scalar constant leaf, `ir.const`), "argument" (an input of the
    # graph), "commutative" (f(a, b) == f(b, a): the scheduler may update either argument's
    # buffer in place), "product" (elementwise multiplication: associative and commutative, scalar
    # constant factors first; passes/scalars.py), "matrix_product" (`@`, associative:
    # passes/matchain.py), "narrow" (its NumPy array may be of a narrower dtype than the
    # node's: the scheduler never writes another value into its buffer), "number_arg" (a
    # scalar argument may be a Python number: codegen/function.weak_as_is).
    traits: frozenset = frozenset()
    # The Python operator this op implements on IR nodes (`+`, `-`, `*`, `/`, `**`, `@`,
    # `-x` for negation, `.T` for the full transpose): `Node.__add__` builds it.
    operator: str | None = None
    # "float", "bool", "int" (Index values) or "tuple" (a loop); or a function
    # (args, attrs) -> one of them, for ops whose dtype follows their arguments' (ops/dtypes.py)
    dtype: str | Callable[..., str] = "float"
    domain: tuple = ()                        # per-argument test domain
    prelude: str | None = None                # helper source needed in the emitted module
    # Short name for temporaries (`diff` for sub, after a source name: `Z_diff`), or a
    # function (node, source names of its arguments) -> a name or None (`XV` for X @ V), or
    # a suffix with a leading "_" (`_sum`: named as the string hint "sum" would be).
    hint: str | Callable[..., str | None] | None = None
    # The elementwise function computing this op from its arguments in order, by its
    # array-API/NumPy name (`subtract`; a module helper `_sigmoid` taking `out=` alike), if
    # there is one: the scheduler then may ask the printer to compute it in place
    # (`Printer.into`, `Printer.augmented`) on a target that `supports_out`.
    ufunc: str | None = None
    # Whether the emitted code may return its first argument itself or a view of it (so a
    # result must be copied before it is returned if that argument is the caller's):
    # None (a fresh array), "view" (a writeable view) or "readonly" (a read-only view,
    # like np.broadcast_to); a function of the node when that depends on the node.
    view: str | Callable[..., str | None] | None = None
    # For the workspace (`--workspace`): (printer, node, out) -> the code computing the
    # node into the buffer `out` (`np.matmul(a, b, out=out)`), or None where it has none;
    # ops with a `ufunc` need none unless they spell it otherwise (`x ** 2`: np.square).
    into: Callable[..., str | None] | None = None
    # For the workspace: node -> "zeros" or "empty" when the op's code is a new array of
    # the node's shape (`np.zeros_like(x)`, `np.empty(...)`; a statement op: its first
    # line), which the workspace may provide instead; None otherwise.
    buffer: Callable[..., str | None] | None = None

    def emitter(self, target: str) -> Callable[..., tuple[str, int]] | None:
        """The emission rule for `target` (a printer's `target`)."""
        return _for_target(self.emit, target)

    def statement(self, target: str) -> Callable[..., list[str]] | None:
        """The statement rule for `target`, if the op is emitted as statements."""
        return _for_target(self.stmt, target)

    def view_of(self, node) -> str | None:
        """`view` for this node."""
        return self.view(node) if callable(self.view) else self.view

    def infer(self, args, attrs) -> tuple[tuple, str]:
        """The shape and dtype of `self(*args, **attrs)`."""
        dtype = self.dtype if isinstance(self.dtype, str) else self.dtype(args, attrs)
        return tuple(self.shape(args, **attrs)), dtype

    def has(self, trait: str) -> bool:
        return trait in self.traits



# The tags a rewrite rule may carry, in the order the engine tries them on a node:
#   canonicalize: one canonical form of equal expressions (folding, `x * 1`, signs and
#     scalar factors outwards), so that equal values are one node;
#   stabilize: a numerically stabler form (`log(sigmoid(z))` is `-softplus(-z)`);
#   fuse: a known pattern as one cheaper op (`1 / (1 + exp(-z))` is `sigmoid(z)`);
#   lower: a form the canonical one would undo (not applied while building).
TAGS = ("canonicalize", "stabilize", "fuse", "lower")


@dataclass(frozen=True)
class Rule:
    """A named rewrite rooted at one op: `fn(*args, **attrs)` gives an equivalent node
    (built with `make`) or None when the rule does not apply."""

    name: str
    op: str
    tag: str
    fn: Callable[..., Any]
    doc: str                   # one line of intent
    # The ops the rule looks for among the node's arguments: it gives None unless an
    # argument is a node of one of them ("const": a scalar constant). None: any node. The
    # engine tries a rule only on nodes it may apply to (and checks that in the tests).
    inspects: frozenset[str] | None = None
    # Per argument, by position, the ops it must be for the rule to apply (None: any):
    # `mul_constants_together` needs `const * mul`. The engine skips the rule on other
    # nodes, as for `inspects` (and the tests check that too).
    operands: tuple[frozenset[str] | None, ...] | None = None

    def fits(self, arg_ops: tuple) -> bool:
        """Whether the rule may apply to a node whose arguments are of these ops."""
        if self.inspects is not None and self.inspects.isdisjoint(arg_ops):
            return False
        if self.operands is not None:
            for want, got in zip(self.operands, arg_ops):
                if want is not None and got not in want:
                    return False
        return True

    def __repr__(self) -> str:
        return f"<rule {self.name} on {self.op} [{self.tag}]>"


def _for_target(rule, target: str):
    """`rule` itself, or its entry for `target` (else "default") when it is per target."""
    if isinstance(rule, dict):
        return rule.get(target, rule.get("default"))
    return rule


@dataclass(frozen=True)
class Builtin:
    """A function of the source language.

    `params` lists the parameter names in order; those in `static` are compile-time
    values (axes, shapes, flags) rather than arrays. `defaults` gives optional ones.
    """

    name: str
    params: tuple[str, ...]
    build: Callable[..., Any]
    static: frozenset = frozenset()
    defaults: dict = field(default_factory=dict)
    variadic: bool = False   # trailing array arguments (einsum)
    list_param: str | None = None   # a parameter that takes a list of arrays (concatenate)
    # build() also receives `inputs=`, the argument nodes of the entry point being compiled
    # (constant arrays such as ones(shape) take the dtype of one of them).
    needs_inputs: bool = False
    # Elementwise: its array arguments may be Python numbers (`maximum(x, 0)`). Any other
    # built-in gets a number argument as a 0-d array in the entry point's dtype, since its
    # code may call methods on it (`2.reshape(...)` is not Python).
    elementwise: bool = False
    # The parameter that takes a comparison (where's `condition`): the frontend accepts a
    # boolean array there and requires one; every other array argument must be numbers.
    condition: str | None = None
    # The parameters that take Index (integer) values as they are (one_hot's labels); every
    # other array parameter gets an Index value converted to floats (ops/indexing.py).
    index_params: tuple = ()
    # A shape built-in (reshape, transpose, ...): an Index value passes through it as
    # integers (`reshape(y, (N * T,))` still indexes), a float array stays floats.
    keeps_index: bool = False


# The kinds of compile-time (static) arguments, by parameter name. The frontend checks
# every static argument against its kind, structurally, before a built-in sees it: only
#   SHAPE: a dimension expression or a tuple of them (positive, bounded);
#   AXIS:  None, an integer or a tuple of integers;
#   FLAG:  True or False;
#   DIM:   one dimension expression (eye's size);
#   SPEC:  a string (einsum's subscripts; the only place a string is accepted);
#   INT:   an integer literal, possibly negative (tril's diagonal, split's count).
SHAPE_ARG, AXIS_ARG, FLAG_ARG, DIM_ARG, SPEC_ARG = "shape", "axis", "flag", "dim", "spec"
START_ARG = "start"   # a dimension expression or 0 (arange's start)
INT_ARG = "int"
STATIC_KINDS = {"shape": SHAPE_ARG, "axis": AXIS_ARG, "axes": AXIS_ARG, "keepdims": FLAG_ARG,
                "n": DIM_ARG, "spec": SPEC_ARG,
                "reverse": FLAG_ARG, "lower": FLAG_ARG, "k": INT_ARG,
                # indexing (ops/indexing.py): arange's bounds, one_hot's and segment_sum's sizes
                "start": START_ARG, "stop": DIM_ARG, "num_classes": DIM_ARG,
                "num_segments": DIM_ARG}

REGISTRY: dict[str, OpDef] = {}
BUILTINS: dict[str, Builtin] = {}
PRELUDES: dict[str, str] = {}
RULES: dict[str, Rule] = {}             # every rewrite rule, by name
_PENDING: dict[str, list[Rule]] = {}    # rules of ops not registered yet


def defop(name: str, nargs: int | None, **fields) -> OpDef:
    """Register an IR operation."""
    if name in REGISTRY:
        raise InternalError(f"operation {name!r} registered twice")
    op = OpDef(name=name, nargs=nargs, **fields)
    op.rules.extend(_PENDING.pop(name, ()))   # rules written above their op's entry
    REGISTRY[name] = op
    return op


def attach_rules(name: str, **rules: Callable[..., Any]) -> None:
    """Give the registered op `name` derivative rules (`vjp`, `jvp`, `vmap`) written in a
    higher layer: a loop's rules differentiate its body, so gradgen/autodiff/loops.py
    registers them (ops/ never imports autodiff/)."""
    import dataclasses

    unknown = set(rules) - {"vjp", "jvp", "vmap"}
    if name not in REGISTRY or unknown:
        raise InternalError(f"cannot attach rules {sorted(rules)} to {name!r}")
    REGISTRY[name] = dataclasses.replace(REGISTRY[name], **rules)


def rewrite(op: str, tag: str = "canonicalize", name: str | None = None,
            inspects: Iterable[str] | None = None,
            operands: Iterable[Iterable[str] | None] | None = None):
    """Decorator: register `fn` as a rewrite rule of `op` (tried after the op's earlier
    rules; it may stand above the op's `defop`). The rule's name is the function's (or
    `name`), its intent the first line of its docstring. `inspects`: the argument ops
    without which the rule never applies (`Rule.inspects`); `operands`: per argument, the
    ops it must be (`Rule.operands`)."""
    if tag not in TAGS:
        raise InternalError(f"unknown rule tag {tag!r}")

    def register(fn):
        rule_name = name or fn.__name__.lstrip("_")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        if not doc:
            raise InternalError(f"rule {rule_name!r} has no line of intent (docstring)")
        if rule_name in RULES:
            raise InternalError(f"rule {rule_name!r} registered twice")
        rule = Rule(rule_name, op, tag, fn, doc,
                    None if inspects is None else frozenset(inspects),
                    None if operands is None else tuple(None if o is None else frozenset(o)
                                                        for o in operands))
        RULES[rule_name] = rule
        opdef = REGISTRY.get(op)
        (opdef.rules if opdef is not None else _PENDING.setdefault(op, [])).append(rule)
        return fn
    return register


# The compilation memo's key of `id(node) -> the ops of the nodes that read it` in the
# graph that `passes.rules.apply` is rewriting with the rules of tag `lower` (set there,
# for the time of one apply; nodes a rewrite rebuilds inherit their original's readers).
READERS = "readers of the graph being lowered"


def read_by(node, ops: tuple, memo: dict) -> bool:
    """Whether `node`, in the graph being lowered, is also read by a node of one of `ops`
    (a matrix product, say, that no rewrite takes apart: then `node` is computed anyway,
    and a rule that folds it into its other readers would compute it twice). False where
    nothing is known (a node the rewrite made, or no apply under way)."""
    readers = memo.get(READERS)
    return bool(readers) and any(op in ops for op in readers.get(id(node), ()))


def check_rules() -> None:
    """Every rule written is attached to a registered op."""
    if _PENDING:
        raise InternalError(f"rules of unknown operations: {sorted(_PENDING)}")


def defbuiltin(name: str, params: tuple[str, ...], build: Callable[..., Any], *,
               static: tuple[str, ...] = (), defaults: dict | None = None,
               variadic: bool = False, list_param: str | None = None,
               needs_inputs: bool = False, elementwise: bool = False,
               condition: str | None = None, index_params: tuple = (),
               keeps_index: bool = False) -> Builtin:
    """Register a function of the source language."""
    if name in BUILTINS:
        raise InternalError(f"built-in {name!r} registered twice")
    for p in static:
        if p not in STATIC_KINDS:
            raise InternalError(f"static parameter {p!r} of {name!r} has no kind in STATIC_KINDS")
    if condition is not None and (condition not in params or condition in static):
        raise InternalError(f"condition {condition!r} of {name!r} is not an array parameter")
    b = Builtin(name, tuple(params), build, frozenset(static), dict(defaults or {}), variadic,
                list_param, needs_inputs, elementwise, condition, tuple(index_params),
                keeps_index)
    BUILTINS[name] = b
    return b
