"""Readable, unique Python names: source names, `dZ` for cotangents, `tZ` for tangents."""

from __future__ import annotations

import ast
import builtins
import functools
import io
import itertools
import keyword
import tokenize
import unicodedata
from collections.abc import Iterable, Mapping

from .. import ir
from ..ops.control import STEP_INDICES
from ..ops.dtypes import INT
from ..ops.registry import REGISTRY

RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"np"}


class Namer:
    """Hands out names that are unique within one generated function."""

    def __init__(self, taken=()):
        self.taken: set[str] = set(RESERVED) | set(taken)
        self.next: dict[str, int] = {}   # base -> next suffix to try (keeps this linear)

    def reserve(self, name: str) -> None:
        self.taken.add(name)

    def fresh(self, base: str) -> str:
        """`base` if free, else `base2`, `base3`, ..."""
        base = base if base.isidentifier() else "tmp"
        if base not in self.taken:
            self.taken.add(base)
            return base
        k = self.next.get(base, 2)
        while f"{base}{k}" in self.taken:
            k += 1
        name = f"{base}{k}"
        self.next[base] = k + 1
        self.taken.add(name)
        return name


def cotangent_name(name: str) -> str:
    """The name of the cotangent (reverse-mode derivative) of `name`: `Z` -> `dZ`."""
    return "d" + name


def tangent_name(name: str) -> str:
    """The name of the tangent (forward-mode derivative) of `name`: `Z` -> `tZ`."""
    return "t" + name


# The names of what an entry point's derivative functions take and return, besides the
# `d`/`t` names derived from the primals' above: every derivative prefix is here.
VALUE = "value"        # the value of the entry point, returned beside a derivative
COTANGENT_INPUT = "g"  # the output cotangent `f_vjp` takes


def direction_name(param: str) -> str:
    """The direction for `param` that `f_hvp` takes: `W` -> `vW`."""
    return "v" + param


def hvp_name(param: str) -> str:
    """The block of H v for `param`: `W` -> `HvW`."""
    return "Hv" + param


def hessian_name(row: str, col: str, single: bool) -> str:
    """The Hessian block d2/d`row` d`col`: `H` when there is one Param, else `H_row_col`."""
    return "H" if single else f"H_{row}_{col}"


def jacobian_name(param: str, single: bool) -> str:
    """The Jacobian block d(out)/d`param`: `J` when there is one Param, else `J_param`."""
    return "J" if single else f"J_{param}"


def derived_names(order, source: Mapping, table: Mapping, rename) -> dict:
    """Names for derivatives after their source-named primals: for each node of `order`
    (a topological order of the primal graph) that the source named, its derivative in
    `table` (primal id -> derivative) is named `rename(source name)`, outputs first. A
    Param's derivative, a constant, an input and a node the source named keep no name."""
    names: dict = {}
    for node in reversed(order):
        if node.is_input:   # a Param's derivative is named when it is finished
            continue
        d = table.get(id(node))
        src = source.get(node)
        if d is not None and src is not None and not d.is_const \
                and not d.is_input and d not in source:
            names.setdefault(d, rename(src))
    return names


def rename_identifiers(source: str, mapping: Mapping[str, str]) -> str:
    """`source` (Python code) with every identifier in `mapping` renamed, token by token.

    Attribute names (`np.exp`: only `np` is an identifier here) are left alone; so is
    everything in comments and string literals, except the replacement fields of
    f-strings, which are code. A mapped name used as a keyword argument or parameter
    default (`f(len=1)`) is refused with ValueError: renaming it would change meaning."""
    if not mapping:
        return source
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.COMMENT)]
    starts = _line_starts(source)
    edits = []   # (start offset, end offset, replacement)
    depth = 0
    for k, tok in enumerate(tokens):
        if tok.type == tokenize.OP:
            depth += tok.string in "([{"
            depth -= tok.string in ")]}"
            continue
        start = starts[tok.start[0] - 1] + tok.start[1]
        end = starts[tok.end[0] - 1] + tok.end[1]
        if tok.type == tokenize.NAME and tok.string in mapping:
            before = tokens[k - 1] if k else None
            after = tokens[k + 1] if k + 1 < len(tokens) else None
            if before is not None and before.string == "." and before.type == tokenize.OP:
                continue   # an attribute
            if depth and after is not None and after.string == "=":
                raise ValueError(f"'{tok.string}' is a keyword argument or parameter here")
            edits.append((start, end, mapping[tok.string]))
        elif tok.type == tokenize.STRING and "f" in _prefix(tok.string).lower():
            renamed = _rename_fstring(tok.string, mapping)
            if renamed != tok.string:
                edits.append((start, end, renamed))
    out, at = [], 0
    for start, end, text in edits:
        out += [source[at:start], text]
        at = end
    return "".join(out) + source[at:]


def _line_starts(source: str) -> list[int]:
    starts, total = [], 0
    for line in io.StringIO(source).readlines() or [""]:
        starts.append(total)
        total += len(line)
    starts.append(total)
    return starts


def _prefix(literal: str) -> str:
    return literal[:len(literal) - len(literal.lstrip("rRbBuUfF"))]


def _rename_fstring(literal: str, mapping: Mapping[str, str]) -> str:
    """An f-string literal with the identifiers of its replacement fields renamed (Python
    3.12 tokenizes those fields itself; before, an f-string is one STRING token)."""
    prefix = _prefix(literal)
    rest = literal[len(prefix):]
    quote = rest[:3] if rest[:3] in ('"""', "'''") else rest[:1]
    body = rest[len(quote):len(rest) - len(quote)]
    return prefix + quote + _rename_fields(body, mapping) + quote


def _rename_fields(body: str, mapping: Mapping[str, str]) -> str:
    out, i, n = [], 0, len(body)
    while i < n:
        c = body[i]
        if c in "{}" and body[i:i + 2] in ("{{", "}}"):
            out.append(body[i:i + 2])
            i += 2
            continue
        if c != "{":
            out.append(c)
            i += 1
            continue
        # a replacement field: the expression runs to a top-level '!', ':' or '}'
        j, depth, quote = i + 1, 0, None
        while j < n:
            d = body[j]
            if quote:
                quote = None if d == quote else quote
            elif d in "'\"":
                quote = d
            elif d in "([{":
                depth += 1
            elif d in ")]}" and depth:
                depth -= 1
            elif depth == 0 and (d == "}" or d == ":" or d == "!" and body[j + 1:j + 2] != "="):
                break
            j += 1
        out += ["{", rename_identifiers(body[i + 1:j], mapping)]
        k = j
        depth = 0
        while k < n and not (body[k] == "}" and depth == 0):   # conversion and format spec
            depth += (body[k] == "{") - (body[k] == "}")
            k += 1
        out.append(_rename_fields(body[j:k], mapping) if "{" in body[j:k] else body[j:k])
        out.append("}")
        i = k + 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _helper_names(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """The module-level names a helper source defines, and every identifier it uses (the
    helpers are our own fixed sources: parsed once per process, not per compilation)."""
    tree = ast.parse(source)
    defined = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            defined.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            defined |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            defined.add(stmt.target.id)
    used = set()   # (one walk, node types compared exactly: ~half of the work per process)
    name, arguments = ast.Name, ast.arguments
    for n in ast.walk(tree):
        kind = type(n)
        if kind is name:
            used.add(n.id)
        elif kind is arguments:
            used.update(a.arg for a in n.args + n.kwonlyargs)
    return frozenset(defined), frozenset(used)


class ModuleNamer:
    """The module-level names of an emitted module that are not the user's: the NumPy
    alias `np` (and `npt` for `numpy.typing`), the type aliases (`Array`, ...), the
    helpers (`_dims`, `_sigmoid`, ...), the spec constants, and the builtins the emitted
    code and the helpers call (`float`, `len`, ...).

    Each internal name keeps its canonical spelling unless a user name (an entry point,
    an emitted function, an argument or a dimension: names the user chose and sees) takes
    it; then it gets a readable variant no user name, helper variable or builtin uses
    (`numpy` or `np_` for `np`, `_dims_`, `len_`). Builtins renamed that way are bound
    by an alias at the top of the module (`len_ = len`), before any user function exists.
    """

    def __init__(self, user: Iterable[str], helpers: Iterable[str],
                 code_builtins=("float", "range", "reversed")):
        self.user = {unicodedata.normalize("NFKC", u) for u in user}
        self.canonical: list[str] = ["np", "npt"]
        used_anywhere: set[str] = set(code_builtins)
        for source in helpers:
            defined, used = _helper_names(source)
            self.canonical += sorted(defined - set(self.canonical))
            used_anywhere |= used
        builtin_names = set(dir(builtins))
        self.builtins = sorted((used_anywhere & builtin_names) | set(code_builtins))
        self.canonical += [b for b in self.builtins if b not in self.canonical]
        self.avoid = self.user | set(RESERVED) | used_anywhere
        self.names: dict[str, str] = {}
        self.values: set[str] = set()
        self.specs: dict[str, str] = {}
        for c in self.canonical:
            self.names[c] = self._give(c)

    def _give(self, canonical: str) -> str:
        if canonical not in self.user and canonical not in self.values:
            name = canonical
        else:
            first = (["numpy"] if canonical == "np" else []) + [canonical + "_"]
            variants = itertools.chain(first, (f"{canonical}_{k}" for k in itertools.count(2)))
            name = next(v for v in variants if v not in self.avoid and v not in self.values)
        self.values.add(name)
        return name

    def __getitem__(self, canonical: str) -> str:
        return self.names[canonical]

    def fresh(self, canonical: str) -> str:
        """A new module-level name (a spec constant): `canonical` if free, else a variant;
        never one handed out before."""
        return self._give(unicodedata.normalize("NFKC", canonical))

    def spec_constant(self, entry: str) -> str:
        """The name of an entry point's argument-spec constant (`_F_ARGS`), handed out once.
        The compiler asks for every entry point's before it names any function's locals:
        a local of `f` named `_G_ARGS` must not take the constant of a later entry `g`."""
        if entry not in self.specs:
            spec = unicodedata.normalize("NFKC", f"_{entry.upper()}_ARGS")
            self.specs[entry] = self.fresh(spec if spec.isidentifier() else f"_{entry}_ARGS")
        return self.specs[entry]

    def taken(self) -> set[str]:
        """Every name handed out (locals must not shadow them)."""
        return set(self.values)

    def mapping(self) -> dict[str, str]:
        """Canonical -> actual, for the names that are not canonical."""
        return {c: self.names[c] for c in self.canonical if self.names[c] != c}

    def aliases(self) -> list[str]:
        """`len_ = len` for each builtin that needs another name."""
        return [f"{self.names[b]} = {b}" for b in self.builtins if self.names[b] != b]

    def numpy_import(self) -> str:
        np = self.names["np"]
        return "import numpy" if np == "numpy" else f"import numpy as {np}"

    def typing_import(self) -> str:
        """`import numpy.typing as npt`, for the annotations' type aliases."""
        return f"import numpy.typing as {self.names['npt']}"


# ---------------------------------------------------------------- temporaries

# The builder's memo key of names for temporaries (id -> name) that do not make a node a
# variable as `names` does: a cotangent named after its primal (`dhsWy`) where the
# scheduler gives it a statement anyway (codegen/function.py). Rebuilt nodes keep them
# (`ir.carry_names`).
TEMPORARY_NAMES = ir.TEMPORARY_NAMES

# Nodes looked at, breadth first, for a source name to derive a temporary's name from.
_NAME_SEARCH = 16


def temp_name(n, names: Mapping, depth: int = 3) -> str:
    """A name for a temporary, derived from the source names of what it is computed from:
    the op's hint after the source variable it is computed from (`U_max`, `U_exp`), or what
    the op's own hint makes of its operands' names (`XV` for `X @ V`, `Q_scaled` for
    `2 * Q`: `OpDef.hint` may be a function). Ops that pass their argument through take the
    argument's name, and so does a view of a computed value (`U_sum` for
    `U_exp.sum(axis=1)[:, None]`); a loop's index at every step (sink_steps) is `steps`.
    `names` maps nodes to their source names."""
    memo = ir.memo()
    given = memo.get(TEMPORARY_NAMES)
    if given and id(n) in given and n not in names:
        return given[id(n)]
    opdef = REGISTRY[n.op]
    if opdef.write is not None and n.args and REGISTRY[n.args[0].op].has("buffer"):
        return n.args[0].attr("name")   # a write into a loop's new buffer: its name
    steps = memo.get(STEP_INDICES, ())
    while n.args and ("transparent" in opdef.traits
                      or "unit_axes" in opdef.traits and (n.args[0].args
                                                         or id(n.args[0]) in steps)):
        n = n.args[0]
        opdef = REGISTRY[n.op]
    if id(n) in steps:   # a loop's index at every step (`np.arange(T)[:, None]`)
        return "steps"
    hint = opdef.hint
    if callable(hint):
        name = hint(n, [_label(a, names) for a in n.args])
        if name and not name.startswith("_"):
            return name
        hint = name[1:] if name else None   # "_sum": a suffix, as a string hint is
    base = hint or n.op
    projections = ir.builder().with_trait("projection")
    a = n
    for _ in range(depth):   # along the first argument that is no constant
        if not a.args:
            break
        for x in _named_from(a, projections):
            if not x.is_const:
                a = x
                break
        else:
            a = a.args[0]
        if a.is_input or a in names:
            return f"{names.get(a) or a.attr('name')}_{base}"
        if given and id(a) in given:   # a temporary named already (`dhs_diff_div`)
            return f"{given[id(a)]}_{base}"
    label = _nearest_label(n, names)
    return f"{label}_{base}" if label else base


def _label(node, names: Mapping) -> str | None:
    """The source name of `node` (a named value or an argument), if it has one."""
    name = names.get(node)
    if name:
        return name
    return node.attr("name") if node.is_input else None


def _nearest_label(n, names: Mapping) -> str | None:
    """The source name of the nearest named value `n` is computed from (breadth first, a
    bounded number of nodes), so that no temporary is called just `mul` or `diff`. Integers
    name no float (the rows of `logp` picked at `y` are no `y_rows`), and a value broadcast
    into one of more axes only where nothing else is near (`hs @ Why + by` is no `by`)."""
    b = ir.builder()
    elementwise, projections = b.with_trait("elementwise"), b.with_trait("projection")

    def into(x, a) -> bool:   # x broadcast into a, an elementwise op of more axes
        return x.ndim < a.ndim and a.op in elementwise

    queue, seen = [(a, into(a, n)) for a in n.args], set()
    floats = n.dtype != INT
    smaller = None
    for a, broadcast in queue:
        if len(seen) >= _NAME_SEARCH:
            break
        if id(a) in seen:
            continue
        seen.add(id(a))
        label = _label(a, names)
        if label and not (floats and a.dtype == INT):
            if not broadcast:
                return label
            smaller = smaller or label
        queue.extend((x, broadcast or into(x, a)) for x in _named_from(a, projections))
    return smaller


def _named_from(a, projections: frozenset[str]) -> tuple:
    """The values `a` is named after: its arguments; a loop's final carried value (a
    `part`: an op of `projections`) first its initial value (`alpha_max` for alpha's, not
    after the array the loop's first carried value starts in); a selection `where(cond, x,
    y)` after its values before its condition (`alpha_where`, not `t_where` for
    `where(t == 1, alpha, ...)`)."""
    args = a.args
    if args and a.op in projections and args[0].args:
        k = a.attr("index")
        if isinstance(k, int) and 0 <= k < len(args[0].args):
            return (args[0].args[k], *args)
    if len(args) == 3 and args[0].dtype == "bool":
        return (args[1], args[2], args[0])
    return args
