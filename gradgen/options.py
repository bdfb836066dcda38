"""What a compilation emits: the options the CLI flags, the API's keywords and `gradgen
check` give (one `Options` value for every way into the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

ALL_MODES = ("grad", "vjp", "jvp", "hvp")
# Every mode is emitted by default (where it applies); --modes picks a subset.
DEFAULT_MODES = ALL_MODES
# The targets (SPEC 2, "Targets"): the name on the command line and in the API -> the
# key of the printers and of the ops' per-target emission rules.
TARGETS = {"numpy": "numpy", "array-api": "array_api"}


@dataclass(frozen=True)
class Options:
    """What to emit; mirrors the CLI flags."""

    modes: tuple[str, ...] | None = None   # None: every function that applies
    hessian: bool = False
    wrt: tuple[str, ...] | None = None
    checks: bool = True
    hints: tuple[tuple[str, int], ...] = ()   # dimension sizes for matrix-chain ordering
    checkpoint: int | None = None   # loops' VJPs save their carried values every K steps
    target: str = "numpy"   # a key of TARGETS
    jacobian: bool = False   # f_jacobian for non-scalar outputs (opt-in, as f_hessian)
    workspace: bool = False   # the functions take `workspace=` (NumPy target; opt-in)

    @property
    def printer(self) -> str:
        """The key of the target's printer (`codegen.printer.PRINTERS`)."""
        return TARGETS[self.target]

    def describe(self) -> str:
        modes = ",".join(self.modes) if self.modes is not None else "default"
        parts = [f"modes={modes}"]
        if self.wrt:
            parts.append(f"wrt={','.join(self.wrt)}")
        if self.hessian:
            parts.append("hessian")
        if self.jacobian:
            parts.append("jacobian")
        parts.append("checks" if self.checks else "no-checks")
        if self.hints:
            parts.append("hint=" + ",".join(f"{k}={v}" for k, v in self.hints))
        if self.checkpoint:
            parts.append(f"checkpoint={self.checkpoint}")
        if self.target != "numpy":
            parts.append(f"target={self.target}")
        if self.workspace:
            parts.append("workspace")
        return " ".join(parts)

    def flags(self) -> str:
        """The `gradgen compile` flags that give these options (empty for the defaults)."""
        parts = []
        if self.modes is not None:
            parts.append(f"--modes {','.join(self.modes) or repr('')}")
        if self.wrt:
            parts.append(f"--wrt {','.join(self.wrt)}")
        if self.hessian:
            parts.append("--hessian")
        if self.jacobian:
            parts.append("--jacobian")
        if not self.checks:
            parts.append("--no-checks")
        parts += [f"--hint {k}={v}" for k, v in self.hints]
        if self.checkpoint:
            parts.append(f"--checkpoint {self.checkpoint}")
        if self.target != "numpy":
            parts.append(f"--target {self.target}")
        if self.workspace:
            parts.append("--workspace")
        return "".join(" " + p for p in parts)


def make_options(modes=None, hessian=False, wrt=None, checks=True, hints=None,
                 checkpoint=None, target="numpy", jacobian=False, workspace=False) -> Options:
    """Validated options (raises ValueError for an unknown mode, a bad hint, a checkpoint
    interval that is not a positive integer, an unknown target, or a workspace asked of
    the array-API target)."""
    return _options(modes, hessian, wrt, checks, hints, checkpoint, target, jacobian,
                    workspace)


def _options(modes, hessian, wrt, checks, hints=None, checkpoint=None,
             target="numpy", jacobian=False, workspace=False) -> Options:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if workspace and target != "numpy":
        raise ValueError("--workspace is for the NumPy target only (the array-API target "
                         "writes into no buffer); leave out one of them")
    if modes is not None:
        modes = tuple(m.strip() for m in modes if m.strip())
        bad = [m for m in modes if m not in ALL_MODES]
        if bad:
            raise ValueError(f"unknown mode {bad[0]!r}; choose from {', '.join(ALL_MODES)}")
    hints = dict(hints or {})
    for k, v in hints.items():
        if not str(k).isidentifier() or isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"a hint is a dimension name and a positive size, got {k}={v!r}")
    if checkpoint is not None and (isinstance(checkpoint, bool) or not isinstance(
            checkpoint, int) or checkpoint < 1):
        raise ValueError(f"checkpoint is a number of loop steps (a positive integer), got "
                         f"{checkpoint!r}")
    return Options(modes, bool(hessian), tuple(wrt) if wrt else None, bool(checks),
                   tuple(sorted(hints.items())), checkpoint, target, bool(jacobian),
                   bool(workspace))
