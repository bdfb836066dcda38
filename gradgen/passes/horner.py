"""Horner's rule, a lowering: a polynomial in one array, written as a sum of terms
`c * x ** k`, is evaluated as `((c_d * x + c_{d-1}) * x + ...) * x + c_0`.

Written as terms, `x ** 4 - 16 * x ** 2 + 5 * x` costs a pass over the data per power,
product and sum, and every term is a fresh temporary of the full size; in Horner's form
each step reads the one running temporary and `x`, so the printer makes it one buffer
updated in place (`h = x * x; h -= 16; h *= x; h += 5; h *= x`). On large arrays those
passes are the time: XLA fuses such a chain into one loop, NumPy cannot, so fewer passes
and fewer temporaries are what is left to win (Styblinski-Tang's value and gradient:
0.5-0.8x the time of the terms at N = 10^3-10^6). A polynomial's derivative is one too,
so the gradient gains as much.

Only sums of monomials are rewritten: the terms are summed in another order and a
monomial's factors are multiplied in another order, which keeps the accuracy of the sum
(Horner's rounding error has the bound of summing the terms). A product of two sums,
`(x - 1) * (x + 1)`, is not expanded (`x * x - 1` loses the precision of the factors
near 1): such a product is a polynomial's variable, not part of it. The coefficients are
the exact scalar constants of the graph (sympy numbers, dimensions allowed), combined
exactly; a polynomial whose coefficients would be new floats (products of the source's
floating-point constants) is left as written. A polynomial is rewritten only when its
Horner form has fewer operations than the nodes it replaces (`x ** 4 + 1` stays), so the
pass never adds a pass over the data. No loop over blocks of the data is emitted: measured
by hand, blocks made sizes below 10^6 slower and added nothing to Horner's form
(benchmarks/findings-probe.md). The array API target gets the same arithmetic.
"""

from __future__ import annotations

from collections import defaultdict

import sympy

from ..ir import Graph, Node, any_made, builder, carry_names, const, make_as_is

# The highest degree collected: past it a power stays a power (`x ** 20`), not a chain.
MAX_DEGREE = 8

# A polynomial: its variable (None: a constant) and its coefficients by degree.
Poly = tuple["Node | None", dict[int, sympy.Expr]]


def horner(graph: Graph) -> Graph:
    """The graph with each polynomial in one array evaluated by Horner's rule, where that
    takes fewer operations."""
    ops = builder().operators
    if not _any_worth_a_look(graph, ops) or not _worth_a_look(_sums_of_powers(graph, ops), ops):
        return graph
    info = _polynomials(graph, ops)
    if not info:
        return graph
    users: dict[int, list[Node]] = defaultdict(list)
    for n in graph.order:
        for a in n.args:
            users[id(a)].append(n)
    outputs = {id(o) for o in graph.outputs}
    written = {n.value for n in graph.order if n.is_const}
    plan: dict[int, Poly] = {}
    for n in graph.order:
        p = info.get(id(n))
        if p is None or p[0] is None or max(p[1]) < 2:
            continue
        # a root: a value something other than a polynomial in the same variable reads
        if id(n) not in outputs and all(_inside(u, p[0], info) for u in users[id(n)]):
            continue
        if not all(_exact(c, written) for c in p[1].values()):
            continue
        if _steps(p[1]) < _cost(n, p[0], info, users, frozenset({ops["**"]})):
            plan[id(n)] = p
    if not plan:
        return graph
    new: dict[int, Node] = {}
    names = dict(graph.names)
    b = builder()
    for n in graph.order:
        args = [new[id(a)] for a in n.args]
        if id(n) in plan:
            x, coeffs = plan[id(n)]
            with b.at(origin=n.origin, phase=n.phase):
                m = _horner_form(new[id(x)], coeffs, ops)
        elif not n.args or all(a is c for a, c in zip(args, n.args)):
            m = n
        else:
            with b.at(origin=n.origin, phase=n.phase):
                m = make_as_is(n.op, *args, **n.kw)
        new[id(n)] = m
        if m is not n:
            carry_names(n, m, names)
    return graph.with_outputs([new[id(o)] for o in graph.outputs], names)


def _any_worth_a_look(graph: Graph, ops: dict[str, str]) -> bool:
    """Whether a sum `_worth_a_look` accepts exists anywhere in the compilation: False
    means no graph of it has a polynomial worth rewriting, and `graph` is not walked at
    all (`ir.any_made`: each node looked at once per compilation rather than once per graph
    that holds it; a gradient's and its function's share most of theirs). What
    `_sums_of_powers` finds in a graph is found among them: a sum with a power term,
    through constant factors and signs, or with such a sum as a term."""
    # the ids of scaled array powers and of the sums that read one, across calls
    powered, hits = builder().memo.setdefault("horner scan", (set(), set()))
    sums = frozenset({ops["+"], ops["-"]})
    mul, div, neg, power = ops["*"], ops["/"], ops["-x"], ops["**"]

    def test(nodes) -> bool:
        found = []
        for n in nodes:
            op = n.op
            if op in sums:
                if n.ndim and any(id(a) in powered or id(a) in hits for a in n.args):
                    hits.add(id(n))
                    found.append(n)
            elif op == power:
                if n.args[1].is_const and n.ndim > 0:
                    powered.add(id(n))
            elif op == neg:
                if id(n.args[0]) in powered:
                    powered.add(id(n))
            elif op == mul or op == div:   # (`_unscaled`: c * a first, then a * c, a / c)
                a, c = n.args
                if op == mul and a.is_const and a.ndim == 0:
                    if id(c) in powered:
                        powered.add(id(n))
                elif c.is_const and c.ndim == 0 and id(a) in powered:
                    powered.add(id(n))
        return bool(found) and _worth_a_look(found, ops)

    return any_made("horner", graph, test)


def _sums_of_powers(graph: Graph, ops: dict[str, str]) -> list[Node]:
    """The array sums a term of which is a power (`x ** k` times constants) or such a sum:
    where a polynomial worth rewriting has its terms (in canonical form a product of a
    variable with itself is a power). One look at each sum per compilation (its graphs
    share their nodes: a gradient's, its function's)."""
    sums = frozenset({ops["+"], ops["-"]})
    scalings = (frozenset({ops["*"]}), frozenset({ops["*"], ops["/"]}), frozenset({ops["-x"]}))
    powers = frozenset({ops["**"]})
    seen: dict[int, bool] = builder().memo.setdefault("horner sums", {})
    found: list[Node] = []
    for n in [n for n in graph.order if n.op in sums]:
        if n.ndim == 0:
            continue
        hit = seen.get(id(n))
        if hit is None:
            hit = False
            for a in n.args:
                if seen.get(id(a)):
                    hit = True
                    break
                a = _unscaled(a, *scalings)
                if a.op in powers and a.args[1].is_const and a.ndim > 0:
                    hit = True
                    break
            seen[id(n)] = hit
        if hit:
            found.append(n)
    return found


def _unscaled(a: Node, left: frozenset, right: frozenset, negs: frozenset) -> Node:
    """`a` without its scalar constant factors (`left`: c * a; `right`: a * c, a / c) and
    signs (`negs`)."""
    while True:
        if a.op in negs:
            a = a.args[0]
        elif a.op in left and a.args[0].is_const and a.args[0].ndim == 0:
            a = a.args[1]
        elif a.op in right and a.args[1].is_const and a.args[1].ndim == 0:
            a = a.args[0]
        else:
            return a


def _worth_a_look(sums: list[Node], ops: dict[str, str]) -> bool:
    """Whether one of `sums` (the graph's array additions and subtractions) may be a
    polynomial worth rewriting: terms of different degrees, one at least 2, in one
    variable, written with more operations than Horner's form needs at the fewest
    (`1 - t * t`, tanh's derivative, is not). Read off the degrees alone, no coefficients,
    visiting only the nodes below the sums made of the polynomials' ops: most graphs have
    no polynomial worth it, and this keeps the pass's cost there small (compile time)."""
    kinds = {ops[o]: o for o in _RULES}
    # (per compilation: its graphs share their nodes, which its table keeps alive)
    memo: dict[int, tuple | None] = builder().memo.setdefault("horner degrees", {})
    for s in sums:
        stack = [s]
        while stack:
            n = stack[-1]
            if id(n) in memo:
                stack.pop()
                continue
            if n.op in kinds and not n.is_const:
                pending = [a for a in n.args if id(a) not in memo]
                if pending:
                    stack.extend(pending)
                    continue
            stack.pop()
            memo[id(n)] = _degrees(n, kinds, memo)
        d = memo[id(s)]
        if d is not None and d[0] is not s and d[0] is not None and len(d[1]) > 1 \
                and max(d[1]) >= 2 and max(d[1]) - 1 + len(d[1]) - 1 < d[3]:
            return True   # (Horner's products and sums, at the fewest, against the ops)
    return False


def _degrees(n: Node, kinds: dict[str, str], memo: dict) -> tuple | None:
    """(variable, the degrees of its terms, whether one term, its operations written out
    as a tree) of `n` as `_polynomials` would find it, the coefficients left out (so terms
    that cancel are still counted); None for a node that is neither a polynomial nor a
    variable."""
    if n.is_const:
        return (None, frozenset({0}), True, 0) if n.ndim == 0 else None
    kind = kinds.get(n.op)
    d = None
    if kind is not None:
        args = [memo[id(a)] for a in n.args]
        if all(a is not None for a in args):
            bases = {id(a[0]): a[0] for a in args if a[0] is not None}
            x = next(iter(bases.values())) if len(bases) == 1 else None
            if len(bases) == 1 and tuple(n.shape) == tuple(x.shape):
                d = _combine(kind, n, args, x)
    if d is None and n.ndim > 0 and n.dtype == "float":
        d = (n, frozenset({1}), True, 0)
    return d


def _combine(kind: str, n: Node, args: list, x: Node) -> tuple | None:
    ops = 1 + sum(a[3] for a in args)
    if kind in ("+", "-"):
        return x, args[0][1] | args[1][1], False, ops
    if kind == "-x":
        return x, args[0][1], args[0][2], ops
    if kind == "/":
        return (x, args[0][1], args[0][2], ops) if args[1][0] is None else None
    if kind == "*":
        a, b = args
        if not (a[2] or b[2]):
            return None
        return x, frozenset(i + j for i in a[1] for j in b[1]), a[2] and b[2], ops
    # "**": a power of a monomial by a small positive integer
    e = _exponent(n)
    if not args[0][2] or e is None:
        return None
    return x, frozenset(k * e for k in args[0][1]), True, args[0][3] + _products(e)


def _exponent(n: Node) -> int | None:
    """The exponent of the power `n` when it is an integer from 1 to MAX_DEGREE (`x ** 2.0`
    is a square), else None; looked up once per constant in a compilation."""
    c = n.args[1]
    if not c.is_const:
        return None
    memo = builder().memo.setdefault("horner exponents", {})
    if id(c) not in memo:
        e = c.value
        memo[id(c)] = int(e) if e.is_number and e.is_real and e == int(e) \
            and 0 < e <= MAX_DEGREE else None
    return memo[id(c)]


def _polynomials(graph: Graph, ops: dict[str, str]) -> dict[int, Poly]:
    """Node id -> its polynomial, for the scalar constants and the sums of monomials in
    one float array (a node that is neither is its own variable when it is a float array).
    `ops`: the op table's Python operators (operator -> op name)."""
    rules = {ops[o]: rule for o, rule in _RULES.items()}
    info: dict[int, Poly] = {}
    found = False
    for n in graph.order:
        p = None
        if n.is_const:
            if n.ndim == 0:
                p = (None, {0: n.value})
        elif n.args and n.op in rules:
            p = rules[n.op](n, [info.get(id(a)) for a in n.args])
            if p is not None and (p[0] is None or n.ndim != p[0].ndim
                                  or tuple(n.shape) != tuple(p[0].shape)):
                p = None    # broadcasting, or a polynomial of constants only (folded)
        if p is None and not n.is_const and n.ndim > 0 and n.dtype == "float":
            p = (n, {1: sympy.Integer(1)})
        elif p is not None and p[0] is not None and p[0] is not n:
            found = True
        if p is not None:
            info[id(n)] = p
    return info if found else {}


def _inside(user: Node, x: Node, info: dict[int, Poly]) -> bool:
    """Whether `user` is a polynomial in `x` built from its arguments (so reading one of
    them does not make that one a root)."""
    p = info.get(id(user))
    return p is not None and p[0] is x and user is not x


def _cost(root: Node, x: Node, info: dict[int, Poly], users: dict[int, list[Node]],
          powers: frozenset[str]) -> int:
    """The operations the rewrite of `root` removes: the nodes of its polynomial that only
    it reads (a power costs its products: `x ** 4` is `(x ** 2) ** 2`, two)."""
    region: set[int] = set()
    stack = [root]
    nodes = []
    while stack:
        n = stack.pop()
        if id(n) in region:
            continue
        region.add(id(n))
        nodes.append(n)
        for a in n.args:
            p = info.get(id(a))
            if p is not None and p[0] is x and a is not x and not a.is_const:
                stack.append(a)
    cost = 0
    for n in nodes:
        if n is not root and not all(id(u) in region for u in users[id(n)]):
            continue   # computed anyway for another reader
        if n.op in powers:
            cost += _products(_exponent(n) or 1)
        else:
            cost += 1
    return cost


def _products(k: int) -> int:
    """The products `x ** k` is lowered to (`pow_small_integer`: `x ** 4` is
    `(x ** 2) ** 2`, two), at least one."""
    return max(1, k.bit_length() - 1 + k.bit_count() - 1)


def _exact(c: sympy.Expr, written: set) -> bool:
    """Whether the coefficient `c` is exact or one of the graph's constants as written: a
    product of two floats (GELU's `sqrt(2 / pi) * 0.044715`) would be a new rounding, and
    a number no reader of the source recognises."""
    return not c.has(sympy.Float) or c in written or -c in written


def _degree_ok(coeffs: dict[int, sympy.Expr]) -> bool:
    return max(coeffs) <= MAX_DEGREE


def _clean(x: Node | None, coeffs: dict[int, sympy.Expr]) -> Poly | None:
    coeffs = {k: c for k, c in coeffs.items() if c != 0}
    if not coeffs:
        coeffs = {0: sympy.Integer(0)}
    return (x, coeffs) if _degree_ok(coeffs) else None


def _var(p: Poly, q: Poly) -> tuple[bool, Node | None]:
    """Whether the two polynomials' variables agree, and the common one."""
    if p[0] is None or q[0] is None or p[0] is q[0]:
        return True, p[0] if p[0] is not None else q[0]
    return False, None


def _add(n: Node, args: list, sign: int = 1) -> Poly | None:
    p, q = args
    if p is None or q is None:
        return None
    ok, x = _var(p, q)
    if not ok:
        return None
    coeffs = dict(p[1])
    for k, c in q[1].items():
        coeffs[k] = coeffs.get(k, 0) + sign * c
    return _clean(x, coeffs)


def _mul(n: Node, args: list) -> Poly | None:
    p, q = args
    if p is None or q is None:
        return None
    ok, x = _var(p, q)
    # a product of two sums is not expanded (it is not a sum of monomials as written)
    if not ok or (len(p[1]) > 1 and len(q[1]) > 1):
        return None
    coeffs: dict[int, sympy.Expr] = {}
    for i, a in p[1].items():
        for j, c in q[1].items():
            coeffs[i + j] = coeffs.get(i + j, 0) + a * c
    return _clean(x, coeffs)


def _div(n: Node, args: list) -> Poly | None:
    p, q = args
    if p is None or q is None or q[0] is not None or q[1].get(0, 0) == 0:
        return None
    return _clean(p[0], {k: c / q[1][0] for k, c in p[1].items()})


def _neg(n: Node, args: list) -> Poly | None:
    p, = args
    return None if p is None else (p[0], {k: -c for k, c in p[1].items()})


def _pow(n: Node, args: list) -> Poly | None:
    p, q = args
    if p is None or q is None or q[0] is not None or len(p[1]) != 1:
        return None   # a power of a monomial only
    e = _exponent(n)
    if e is None:
        return None
    (k, c), = p[1].items()
    return _clean(p[0], {k * e: c ** e})


# The ops a polynomial is made of, by their Python operators (the op table names them).
_RULES = {"+": _add, "-": lambda n, a: _add(n, a, -1), "*": _mul, "/": _div, "-x": _neg,
          "**": _pow}


def _steps(coeffs: dict[int, sympy.Expr]) -> int:
    """The operations of `coeffs`' Horner form (`_horner_form`)."""
    d = max(coeffs)
    steps = 0 if coeffs[d] == 1 else 1
    steps += d - 1                                   # the products by x after the first
    steps += sum(1 for k in coeffs if k < d)         # the sums of the other coefficients
    return steps


def _horner_form(x: Node, coeffs: dict[int, sympy.Expr], ops: dict[str, str]) -> Node:
    """`((c_d * x + c_{d-1}) * x + ...) * x + c_0`, the zero coefficients left out and a
    negative one subtracted; built as is (the canonical rules would expand it again)."""
    d = max(coeffs)
    mul, add, sub = ops["*"], ops["+"], ops["-"]
    h = x if coeffs[d] == 1 else make_as_is(mul, const(coeffs[d]), x)
    for k in range(d - 1, -1, -1):
        if k < d - 1:
            h = make_as_is(mul, h, x)
        c = coeffs.get(k)
        if c is None:
            continue
        h = make_as_is(sub, h, const(-c)) if c.is_negative else make_as_is(add, h, const(c))
    return h
