"""No function or method in `service/` only forwards to another: every hop a reader follows does something.

A forwarder is a function whose whole body (its docstring aside) is one call, returned or not, awaited or
not, to a plain name (`other`, `self.part.method`), passing exactly its own parameters through unchanged:
`def restore(self): return self.pauses.restore()`, `async def call(self, m, p): return await
self._c.call(m, p)`. A call that adds something (a value of its own, a wrapped argument) is not one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import service

ROOT = Path(service.__file__).parent

# Methods an interface we implement requires, and whose job is to hand the call to what they wrap or adapt.
ALLOWED = {
    # The SDK calls every method of a SpanProcessor; the redacting one changes only what `on_end` hands on.
    "adapters/telemetry.py:RedactingSpanProcessor.on_start": "SpanProcessor interface",
    "adapters/telemetry.py:RedactingSpanProcessor.shutdown": "SpanProcessor interface",
    "adapters/telemetry.py:RedactingSpanProcessor.force_flush": "SpanProcessor interface",
    # The `Clock` port over the standard library: the loops read time through it, so tests can set it.
    "core/clock.py:SystemClock.monotonic": "Clock port",
    "core/clock.py:SystemClock.wall": "Clock port",
    "adapters/wiseflow/limiter.py:LoopClock.wall": "Clock port",
    # The `PauseStore` port's lifecycle: the store closes the connection it opened itself.
    "adapters/store/pause.py:ReadOnlyPauseStore.close": "closes its own connection",
}


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = function.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return [n for n in names if n not in ("self", "cls")]


def _plain(target: ast.expr) -> bool:
    """`name` or `name.attr.attr`: a reference, not something computed first."""
    while isinstance(target, ast.Attribute):
        target = target.value
    return isinstance(target, ast.Name)


def _only_call(function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Call | None:
    """The call that is the function's whole body (docstring aside), or None."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Return | ast.Expr):
        return None
    value = body[0].value
    if isinstance(value, ast.Await):
        value = value.value
    return value if isinstance(value, ast.Call) and _plain(value.func) else None


def _passes_through(call: ast.Call, parameters: list[str]) -> bool:
    """Every argument is one of the parameters as it came, and every parameter is passed."""
    passed = [a.value if isinstance(a, ast.Starred) else a for a in call.args]
    passed += [k.value for k in call.keywords]
    names = [a.id for a in passed if isinstance(a, ast.Name) and a.id in parameters]
    return len(names) == len(passed) and sorted(names) == sorted(parameters)


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, function) for every function and method, nested ones included."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    return walk(tree, "")


def forwarders(root: Path) -> list[str]:
    """`path:Qualified.name` of every forwarder under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for name, function in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            call = _only_call(function)
            if call is not None and _passes_through(call, _parameters(function)):
                found.append(f"{path.relative_to(root).as_posix()}:{name}")
    return found


def test_no_function_in_the_service_only_forwards() -> None:
    """Every forwarder found is one an interface requires (listed above with why)."""
    assert [f for f in forwarders(ROOT) if f not in ALLOWED] == []


def test_every_allowed_forwarder_still_exists() -> None:
    """The allow-list names only forwarders that are there: one removed leaves no stale exemption."""
    assert sorted(set(ALLOWED) - set(forwarders(ROOT))) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("def f(self):\n    return self.pauses.restore()\n", True),
        ("async def f(self, a, *, b=None):\n    '''Doc.'''\n    return await self.c.call(a, b=b)\n", True),
        ("def f(x, *rest):\n    g(x, *rest)\n", True),
        ("def f(self, a):\n    return self.c.call(Request(a))\n", False),  # wraps its argument
        ("def f(self, a):\n    return self.c.call(a, tally=self.t)\n", False),  # adds a value of its own
        ("def f(self, a, b):\n    return g(a)\n", False),  # drops a parameter: an adapter to a signature
        ("def f(self, a):\n    return (await self.get([a])).get(a)\n", False),  # works on a result
        ("def f(self):\n    return self.x\n", False),  # no call at all
    ],
)
def test_what_counts_as_forwarding(source: str, found: bool, tmp_path: Path) -> None:
    """The check flags a body that passes its parameters on unchanged, and nothing that adds to them."""
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    assert bool(forwarders(tmp_path)) is found
