"""SciPy without glue: a compiled entry point handed to `scipy.optimize` in one call.

    from gradgen.scipy import minimize, least_squares
    res = minimize(mod.cost, X, Y, V0, W0, method="trust-ncg")   # uses cost_hvp
    V, W = res.params

The arguments are those of the entry point, in its order, the Params given as their
initial values. The Params (those the emitted derivatives are taken with respect to:
all of them, or the `--wrt` ones) are packed into one flat vector and unpacked on the
way back; every other argument (Data, Index, a Param left out by `--wrt`) is bound once.
The objective, `jac=True` (from `f_value_and_grad`), `hessp` (`f_hvp`) and `hess`
(`f_hessian` when compiled with `--hessian`, else assembled from `f_hvp`) come from the
emitted functions beside `f` in its module. `problem(...)` gives the same pieces for
calling SciPy yourself.

This module needs NumPy, and SciPy only inside `minimize` and `least_squares`; it
imports nothing of the compiler, and the emitted modules never import it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult  # type: ignore[import-untyped]
    from scipy.sparse.linalg import LinearOperator  # type: ignore[import-untyped]

__all__ = ["Problem", "least_squares", "minimize", "problem"]

Vector = npt.NDArray[np.float64]

# SciPy's methods by the derivatives they use (scipy.optimize.minimize's documentation).
_NO_JAC = {"nelder-mead", "powell", "cobyla", "cobyqa"}
_HESSP = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
_HESS = {"dogleg", "trust-exact"}

# The docstring lines that name what a derivative is taken with respect to.
_PARAM_LINE = re.compile(r"^\s+(\w+): Param\[", re.MULTILINE)
_WRT_LINE = re.compile(r"^\s+\w+: (?:the gradient for|tangent of|direction for) (\w+), shape",
                       re.MULTILINE)


class Problem:
    """An entry point `f` of a compiled module with its arguments bound, seen as a function
    of one flat vector `x` of its Params, with the pieces SciPy takes.

    `x0` is the flat initial point; `unpack(x)` gives the Params (a tuple, or a bare array
    for one), `pack(*params)` the flat vector. `fun`, `jac`, `fun_and_jac`, `hessp`, `hess`
    are for `scipy.optimize.minimize` (scalar outputs); `residuals` and `jac_operator`
    (or `jacobian`, with `f_jacobian`) for `scipy.optimize.least_squares` (any output,
    flattened). Vectors are accepted as `(n,)` or `(n, 1)` (SciPy's `LinearOperator`
    passes columns); what goes back to SciPy is float64 and flat.
    """

    def __init__(self, f: Callable[..., Any], *args: Any, wrt: Sequence[str] | None = None):
        self.f = f
        self.name = f.__name__
        names = list(inspect.signature(f).parameters)
        if len(args) != len(names):
            raise TypeError(f"{self.name} takes {len(names)} arguments ({', '.join(names)}), "
                            f"got {len(args)}")
        self.wrt = tuple(wrt) if wrt is not None else self._wrt(names)
        unknown = [p for p in self.wrt if p not in names]
        if unknown:
            raise ValueError(f"{self.name} has no argument {unknown[0]!r} (its arguments: "
                             f"{', '.join(names)})")
        self._names = names
        self._args = list(args)
        self._where = [names.index(p) for p in self.wrt]
        initial = [np.asarray(args[i]) for i in self._where]
        for p, a in zip(self.wrt, initial):
            if a.dtype.kind not in "fiu":
                raise TypeError(f"Param {p!r} of {self.name}: expected an array of floats, "
                                f"got an array of {a.dtype}")
        self.shapes = [a.shape for a in initial]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = sum(self.sizes)
        # the Params' dtype (float32 Params stay float32 in the emitted code)
        self.dtype = np.result_type(*[a.dtype for a in initial], np.float32) \
            if all(a.dtype.kind == "f" for a in initial) else np.dtype(np.float64)
        self.x0: Vector = self.pack(*initial)

    # ---------------------------------------------------------------- packing

    def _wrt(self, names: list[str]) -> tuple[str, ...]:
        """The Params the emitted derivatives of `f` are taken with respect to, read off
        the docstrings gradgen writes (`V: Param[D, M]`; `dW: the gradient for W, ...`)."""
        params = _PARAM_LINE.findall(self.f.__doc__ or "")
        for kind in ("grad", "vjp", "jvp", "hvp"):
            g = self._sibling(kind, required=False)
            if g is not None:
                found = list(dict.fromkeys(_WRT_LINE.findall(g.__doc__ or "")))
                if found:
                    return tuple(found)
        if not params:
            raise ValueError(f"{self.name} is not an entry point compiled by gradgen (no "
                             "Param in its docstring); pass wrt=(...) to name the Params")
        return tuple(params)

    def pack(self, *params: Any) -> Vector:
        """The flat float64 vector of the Params (in the order of `wrt`)."""
        if len(params) != len(self.wrt):
            raise TypeError(f"expected {len(self.wrt)} Params ({', '.join(self.wrt)}), "
                            f"got {len(params)}")
        if not params:
            return np.zeros(0)
        return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in params])

    def _vector(self, x: Any, what: str = "x") -> npt.NDArray[Any]:
        x = np.asarray(x)
        if x.ndim > 2 or (x.ndim == 2 and x.shape[1] != 1) or x.size != self.size:
            raise ValueError(f"{what}: expected a vector of {self.size} entries ((n,) or "
                             f"(n, 1)), got shape {x.shape}")
        return x.reshape(-1)

    def split(self, x: Any, what: str = "x") -> list[npt.NDArray[Any]]:
        """The Params of the flat vector `x`, as arrays of their shapes and dtype."""
        x = self._vector(x, what).astype(self.dtype, copy=False)
        out, at = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(x[at:at + size].reshape(shape))
            at += size
        return out

    def unpack(self, x: Any) -> Any:
        """The Params of `x`: a tuple in the order of `wrt`, or a bare array for one."""
        params = tuple(p.copy() for p in self.split(x))
        return params[0] if len(params) == 1 else params

    def _call(self, kind: str, x: Any, *extra: Any) -> Any:
        args = list(self._args)
        for i, p in zip(self._where, self.split(x)):
            args[i] = p
        fn = self.f if kind == "" else self._sibling(kind)
        assert fn is not None   # (_sibling raises when it is missing)
        return fn(*args, *extra)

    def _sibling(self, kind: str, required: bool = True) -> Callable[..., Any] | None:
        name = f"{self.name}_{kind}"
        fn = self.f.__globals__.get(name)
        if fn is None and required:
            flag = {"hessian": " with --hessian", "jacobian": " with --jacobian"}.get(
                kind, f" with --modes including {kind}")
            raise ValueError(f"{name} is not in the module of {self.name}: compile it{flag}")
        return fn

    def _flat(self, parts: Any) -> Vector:
        parts = parts if len(self.wrt) != 1 else (parts,)
        return self.pack(*parts)

    # ---------------------------------------------------------------- minimize

    def fun(self, x: Any) -> float:
        """The value of `f` at the Params `x`."""
        return float(self._call("", x))

    def jac(self, x: Any) -> Vector:
        """The gradient (`f_grad`), flat."""
        return self._flat(self._call("grad", x))

    def fun_and_jac(self, x: Any) -> tuple[float, Vector]:
        """The value and the gradient in one pass (`f_value_and_grad`): for `jac=True`."""
        value, grads = self._call("value_and_grad", x)
        return float(value), self._flat(grads)

    def hessp(self, x: Any, p: Any) -> Vector:
        """The Hessian at `x` times the vector `p` (`f_hvp`)."""
        return self._flat(self._call("hvp", x, *self.split(p, "p")))

    def hess(self, x: Any) -> Vector:
        """The Hessian at `x` as an `(n, n)` matrix: `f_hessian`'s blocks where the module
        has it (compiled with `--hessian`), else one `f_hvp` per column."""
        n = self.size
        if self._sibling("hessian", required=False) is not None:
            blocks = self._call("hessian", x)
            k = len(self.wrt)
            if k == 1:
                blocks = ((blocks,),)
            return np.block([[np.asarray(blocks[i][j], dtype=np.float64).reshape(
                self.sizes[i], self.sizes[j]) for j in range(k)] for i in range(k)])
        H = np.empty((n, n))
        for j in range(n):
            e = np.zeros(n)
            e[j] = 1.0
            H[:, j] = self.hessp(x, e)
        return H

    def minimize_options(self, method: str | None) -> dict[str, Any]:
        """The keywords of `scipy.optimize.minimize` for `method`: `fun`, `x0`, and `jac=True`
        with `hessp` or `hess` where the method uses them."""
        m = (method or "").lower()
        options: dict[str, Any] = {"fun": self.fun, "x0": self.x0, "method": method}
        if m in _NO_JAC:
            return options
        options.update(fun=self.fun_and_jac, jac=True)
        if m in _HESSP:
            options["hessp"] = self.hessp
        elif m in _HESS:
            options["hess"] = self.hess
        return options

    # ---------------------------------------------------------------- least squares

    def residuals(self, x: Any) -> Vector:
        """The output of `f` at `x`, flat (float64)."""
        return np.asarray(self._call("", x), dtype=np.float64).reshape(-1)

    def jacobian(self, x: Any) -> Vector:
        """The Jacobian of the flat output in the flat Params, `(m, n)`, from `f_jacobian`."""
        blocks = self._call("jacobian", x)
        blocks = blocks if len(self.wrt) != 1 else (blocks,)
        cols = [np.asarray(b, dtype=np.float64) for b in blocks]
        m = cols[0].size // self.sizes[0] if self.sizes[0] else 0
        return np.hstack([b.reshape(m, s) for b, s in zip(cols, self.sizes)])

    def jac_operator(self, x: Any) -> LinearOperator:
        """The Jacobian at `x` as a `scipy.sparse.linalg.LinearOperator`: `J v` by `f_jvp`,
        `J^T u` by `f_vjp` (`v`, `u` as `(n,)` or `(n, 1)` columns)."""
        from scipy.sparse.linalg import LinearOperator  # type: ignore[import-untyped]

        out_shape = np.shape(self._call("", x))
        m = int(np.prod(out_shape))
        params = self.split(x)

        def matvec(v: Any) -> Vector:
            _, tangent = self._call("jvp", x, *self.split(v, "v"))
            return np.asarray(tangent, dtype=np.float64).reshape(-1)

        def rmatvec(u: Any) -> Vector:
            u = np.asarray(u).reshape(-1)
            if u.size != m:
                raise ValueError(f"u: expected a vector of {m} entries, got shape {u.shape}")
            g = u.astype(params[0].dtype if params else np.float64).reshape(out_shape)
            return self._flat(self._call("vjp", x, g))

        return LinearOperator((m, self.size), matvec=matvec, rmatvec=rmatvec,
                              dtype=np.float64)

    def least_squares_options(self) -> dict[str, Any]:
        """The keywords of `scipy.optimize.least_squares`: `fun`, `x0` and `jac`, the dense
        Jacobian from `f_jacobian` when the module has it, else the `LinearOperator`
        (with `tr_solver="lsmr"`, which that needs)."""
        if self._sibling("jacobian", required=False) is not None:
            return {"fun": self.residuals, "x0": self.x0, "jac": self.jacobian}
        return {"fun": self.residuals, "x0": self.x0, "jac": self.jac_operator,
                "tr_solver": "lsmr"}


def problem(f: Callable[..., Any], *args: Any, wrt: Sequence[str] | None = None) -> Problem:
    """`f` (an entry point of a compiled module) with its arguments bound, as a function of
    the flat vector of its Params (given here as their initial values). `wrt` names the
    Params when they cannot be read off the emitted docstrings."""
    return Problem(f, *args, wrt=wrt)


def minimize(f: Callable[..., Any], *args: Any, method: str | None = None,
             wrt: Sequence[str] | None = None, **options: Any) -> OptimizeResult:
    """`scipy.optimize.minimize` of the entry point `f` over its Params, starting from the
    values given in `args` (all of `f`'s arguments, in order); `jac=True`, `hessp` and
    `hess` are filled in as `method` uses them (pass your own to override). The result
    carries `params`: the optimum unpacked (a tuple, or a bare array for one Param)."""
    import scipy.optimize  # type: ignore[import-untyped]

    p = Problem(f, *args, wrt=wrt)
    kwargs = p.minimize_options(method)
    kwargs.update(options)
    result = scipy.optimize.minimize(**kwargs)
    result.params = p.unpack(result.x)
    return result


def least_squares(f: Callable[..., Any], *args: Any, wrt: Sequence[str] | None = None,
                  **options: Any) -> OptimizeResult:
    """`scipy.optimize.least_squares` of the output of `f` (flattened) over its Params,
    from the values given in `args`; the Jacobian comes from `f_jacobian` or, meanwhile,
    a `LinearOperator` of `f_jvp` and `f_vjp`. The result carries `params`."""
    import scipy.optimize  # type: ignore[import-untyped]

    p = Problem(f, *args, wrt=wrt)
    kwargs = p.least_squares_options()
    kwargs.update(options)
    result = scipy.optimize.least_squares(**kwargs)
    result.params = p.unpack(result.x)
    return result
