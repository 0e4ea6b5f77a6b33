"""The package boundaries, read from the source with `ast` (no import is executed).

Each `Rule` says: modules under `where` must not import anything under `forbidden`, except
the modules listed in `allowed`. Imports inside functions and `if TYPE_CHECKING:` blocks count
too (a boundary is about knowledge, not load time). Add a rule by adding a line to `RULES`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Rule:
    why: str
    where: str  # a package or module, dotted: "monitor.alerts"
    forbidden: str  # a package or module, dotted: "storage"
    allowed: tuple[str, ...] = ()  # modules under `where` exempt from the rule


RULES = (
    Rule("alerts hear call events, never storage's vocabulary", "monitor.alerts", "storage"),
    Rule(
        "the board hears call events; it reads the database through BoardReader",
        "monitor.board",
        "storage",
    ),  # fmt: skip
    Rule(
        "events are monitor's own vocabulary, independent of storage", "monitor.events", "storage"
    ),  # fmt: skip
    Rule(
        "only the mapping module knows storage's write records",
        "monitor",
        "storage.records",
        allowed=("monitor.runtime.storage_rows",),
    ),  # fmt: skip
    Rule("the sans-I/O call core does no I/O through storage", "monitor.core", "storage"),
    # Rooms (issue 15 item 4): lower packages own their settings and know nothing above them;
    # the composition root (monitor.app) is the one place that wires the web layer in.
    *(
        Rule(f"{low} sits below {high}: it must not know it", low, high)
        for low in ("asr", "audio_quality", "storage")
        for high in ("config", "monitor", "ivr_sim", "evaluation")
    ),
    Rule("the live runtime does not know the web layer", "monitor.runtime", "monitor.web"),
    Rule("the call core does not know the web layer", "monitor.core", "monitor.web"),
    Rule("the product does not ship the simulator", "monitor", "ivr_sim"),
    Rule("the product does not ship the evaluation code", "monitor", "evaluation"),
    Rule("the product does not ship the evaluation code", "asr", "evaluation"),
    Rule("the board model and feed are not pages", "monitor.board", "monitor.web"),
    Rule(
        "the simulator shares only the wire codecs with the product",
        "ivr_sim",
        "monitor",
        allowed=(),
    ),  # fmt: skip
)

#: ivr_sim may import these (the codecs both sides share) and nothing else of monitor.
SHARED_WITH_SIM = ("monitor.wire",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, name: str | None = None) -> set[str]:
    """Every module `path` (module `name`) imports: absolute names; `from x import y` gives
    x and x.y."""
    name = name or module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = package.split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules(where: str) -> list[Path]:
    base = ROOT.joinpath(*where.split("."))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    return sorted(base.rglob("*.py"))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.where}-x-{r.forbidden}")
def test_import_rule(rule: Rule) -> None:
    found = modules(rule.where)
    assert found, f"{rule.where}: no such package"
    broken = sorted(
        f"{module_name(path)} imports {name}"
        for path in found
        if module_name(path) not in rule.allowed
        for name in imported(path)
        if under(name, rule.forbidden)
        and not (rule.where == "ivr_sim" and any(under(name, w) for w in SHARED_WITH_SIM))
    )
    assert not broken, f"{rule.why}:\n" + "\n".join(broken)


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: plain, from, relative, and inside TYPE_CHECKING / functions."""
    src = tmp_path / "probe.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "import storage.models\n"
        "from storage import records\n"
        "from . import state\n"
        "if TYPE_CHECKING:\n    from storage.repository import Repository\n"
        "def f():\n    import storage.db\n",
        encoding="utf-8",
    )
    names = imported(src, "monitor.board.probe")
    assert {"storage.models", "storage", "storage.records", "monitor.board.state",
            "storage.repository", "storage.db"} <= names  # fmt: skip
