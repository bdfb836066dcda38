"""codegen/liveness.Liveness: the scheduler's counts of remaining reads and its view maps.

The emitted code that relies on them is checked end to end elsewhere (test_aliasing,
test_inplace_spill); here the bookkeeping itself: `view_bases` and `views_of` stay each
other's inverse whatever is defined over what, and a buffer is dead only when neither it
nor a view of it is read later.
"""

from __future__ import annotations

from gradgen.codegen.liveness import Liveness


class _N:
    """A stand-in node: Liveness only stores nodes and reads their shape."""

    is_const = False

    def __init__(self, shape=(3,)):
        self.shape = shape


def _inverse(live: Liveness) -> dict:
    """`views_of` worked out from `view_bases`, as it must be."""
    out: dict = {}
    for view, bases in live.view_bases.items():
        for b in bases:
            out.setdefault(b, set()).add(view)
    return out


def _views_of(live: Liveness) -> dict:
    return {b: set(vs) for b, vs in live.views_of.items() if vs}


def test_view_maps_stay_inverse_through_redefinitions():
    live = Liveness(frozenset())
    live.define(_N(), "a", 2, buffer=True)
    live.define(_N(), "b", 1, buffer=True)
    live.define(_N(), "v", 1, view_of=("a",))            # v = a.T
    live.define(_N(), "w", 1, view_of=("v", "b"))        # a view read by a view: its bases
    assert live.view_bases == {"v": {"a"}, "w": {"a", "b"}}
    assert _views_of(live) == _inverse(live) == {"a": {"v", "w"}, "b": {"w"}}
    live.define(_N(), "w", 1, view_of=("b",))            # w rebound: no longer a's
    assert _views_of(live) == _inverse(live) == {"a": {"v"}, "b": {"w"}}
    live.define(_N(), "v", 1)                            # v rebound to an array of its own
    assert live.view_bases == {"w": {"b"}}
    assert _views_of(live) == _inverse(live) == {"b": {"w"}}


def test_a_buffer_is_dead_only_when_no_view_of_it_is_read_later():
    live = Liveness(frozenset({"x"}))
    a, x = _N(), _N()
    live.define(a, "a", 1, buffer=True)
    live.define(x, "x", 1, buffer=True)                  # an argument: never a buffer
    assert "x" not in live.buffers
    live.define(_N(), "v", 1, view_of=("a",))
    live.read(("a",))
    code = {id(a): ("a", 0)}
    fits = lambda owner, args: True   # noqa: E731
    anywhere = lambda name: True      # noqa: E731
    assert live.read_later("a")                          # through v
    assert live.dead_buffer((a,), (3,), code, set(), fits, anywhere) is None
    live.read(("v",))
    assert not live.read_later("a")
    assert live.dead_buffer((a,), (3,), code, set(), fits, anywhere) == "a"
    assert live.dead_buffer((a,), (4,), code, set(), fits, anywhere) is None   # shape
    assert live.dead_buffer((a,), (3,), code, {id(a)}, fits, anywhere) is None  # inlined
    assert live.dead_buffer((a,), (3,), code, set(), lambda o, args: False, anywhere) is None


def test_fork_copies_and_drops_the_new_arguments_buffers():
    live = Liveness(frozenset())
    live.define(_N(), "a", 1, buffer=True)
    live.define(_N(), "v", 1, view_of=("a",))
    new = live.fork(frozenset({"a"}))
    assert "a" not in new.buffers and "a" in live.buffers
    new.define(_N(), "v", 1)
    assert live.view_bases == {"v": {"a"}} and new.view_bases == {}
    assert _views_of(live) == {"a": {"v"}} and _views_of(new) == {}
