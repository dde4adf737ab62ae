"""The layout's rules, checked on the source: no import cycle among the modules of ``reviewer/``
or of ``ml/`` (none through module-level imports; through imports deferred into functions, none
beyond the allow-list); ``ml/`` never imports the web app (django, ``reviewer``, ``webapp``); no file over
400 lines outside migrations. Each allow-list names what is there today, so a new cycle or a new
oversized file fails here; remove an entry once it is no longer true."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reviewer", "ml")
MAX_LINES = 400

# Cycles closed by an import deferred into a function body, which exist today and are being taken
# apart; a cycle not listed here fails. Module-level cycles have no allow-list.
KNOWN_CYCLES: set[frozenset[str]] = set()

# Files over MAX_LINES today (none): a file not listed here fails once it grows past the limit.
KNOWN_LONG_FILES: set[str] = set()


def _python_files(top: str) -> Iterator[Path]:
    yield from sorted(p for p in (ROOT / top).rglob("*.py") if "migrations" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module, deferred: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: the module body and its if/try/with
    blocks, not ``if TYPE_CHECKING:`` blocks; ``deferred=True`` adds the imports inside function
    and class bodies (run later, but still a dependency)."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif deferred and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack += node.body
        elif deferred and isinstance(node, ast.For | ast.While):
            stack += [*node.body, *node.orelse]
        elif isinstance(node, ast.If):
            stack += node.orelse if _is_type_checking(node.test) else [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            stack += [*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)]
        elif isinstance(node, ast.With):
            stack += node.body


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The known modules an import statement loads (``from a import b`` loads ``a.b`` when that
    is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parent = module.split(".") if is_package else module.split(".")[:-1]
            parent = parent[: len(parent) - (node.level - 1)]
            base = ".".join([*parent, base] if base else parent)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(package: str, deferred: bool = False) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in _python_files(package)}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in _module_level_imports(tree, deferred):
            edges |= _targets(node, module, path.name == "__init__.py", known)
        graph[module] = {e for e in edges if e != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_ignores_function_level_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == {frozenset("abc")}
    tree = ast.parse(
        "import os\nif TYPE_CHECKING:\n    import b\ndef f():\n    import c\ntry:\n    import d\nexcept E:\n    pass"
    )
    assert [a.name for n in _module_level_imports(tree) for a in n.names] == ["d", "os"]


def _show(found: set[frozenset[str]]) -> str:
    return "; ".join(" <-> ".join(sorted(c)) for c in found)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_at_module_level(package: str) -> None:
    found = cycles(import_graph(package))
    assert not found, "import cycles: " + _show(found)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_new_import_cycle_counting_deferred_imports(package: str) -> None:
    found = cycles(import_graph(package, deferred=True))
    known = {c for c in KNOWN_CYCLES if next(iter(c)).split(".")[0] == package}
    new = {c for c in found if not any(c <= k for k in known)}  # a known cycle may shrink, not grow
    assert not new, "import cycles (deferred imports counted): " + _show(new)


def _imports_of(top: str, forbidden: tuple[str, ...]) -> list[str]:
    """Every import in ``top/`` (function bodies included) of a top-level package in ``forbidden``."""
    offenders = []
    for path in _python_files(top):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )  # fmt: skip
            for name in names:
                if name.split(".")[0] in forbidden:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    return offenders


def test_ml_never_imports_the_web_app() -> None:
    """Anywhere in ``ml/``, function bodies included: the models and agents must run without Django."""
    offenders = _imports_of("ml", ("django", "rest_framework", "reviewer", "webapp"))
    assert not offenders, "\n".join(offenders)


def test_reviewer_never_imports_the_project() -> None:
    """The direction is ``webapp -> reviewer -> ml``: ``reviewer/`` gets the Celery app from Celery
    (``celery.current_app``) and the settings from Django, never by importing ``webapp``."""
    offenders = _imports_of("reviewer", ("webapp",))
    assert not offenders, "\n".join(offenders)


def test_core_data_types_import_without_torch() -> None:
    """``ml.data.types`` is what most of ``ml/`` needs: importing it must not pull in torch or pydicom."""
    code = "import sys, ml.data.types; print(sorted(m for m in ('torch', 'pydicom') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _source_files() -> Iterator[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.ts", "*.tsx"], cwd=ROOT, capture_output=True, text=True)
    for name in tracked.stdout.split():
        path = ROOT / name
        if "migrations" not in path.parts and path.exists():
            yield path


def test_no_new_file_over_the_line_limit() -> None:
    long = {str(p.relative_to(ROOT)) for p in _source_files() if len(p.read_text().splitlines()) > MAX_LINES}
    assert not long - KNOWN_LONG_FILES, f"over {MAX_LINES} lines: {sorted(long - KNOWN_LONG_FILES)}"


def test_code_and_docs_stand_on_their_own() -> None:
    """Comments and docs never point outside the repository (a design brief a clone does not
    have, an issue tracker): what a reader needs lives in docs/."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    suffixes = (".py", ".ts", ".tsx", ".cjs", ".mjs", ".md", ".sh", ".toml", ".yml", ".yaml", ".json")
    needle = "DESIGN" + ".md"  # split so this file does not match itself
    offenders = [
        name
        for name in tracked
        if name.endswith(suffixes) and (ROOT / name).is_file() and needle in (ROOT / name).read_text(errors="ignore")
    ]
    assert offenders == []


# --- reads live in selectors ---------------------------------------------------------------------

# Attribute calls that change state: the ORM's writes and row locks, and the cache's.
WRITE_CALLS = frozenset(
    {
        "save", "create", "update", "delete", "bulk_create", "bulk_update", "get_or_create",
        "update_or_create", "select_for_update", "delete_many", "set", "add", "incr", "remove", "clear",
        "execute", "on_commit", "atomic", "delay", "apply_async", "send", "send_task",
    }
)  # fmt: skip
# Attribute reads and calls that query the database.
# Attribute names that only a queryset has (``get``, ``values``, ``count`` are a dict's or list's too).
QUERY_NAMES = frozenset(
    {"objects", "filter", "exclude", "first", "last", "exists", "values_list", "annotate", "aggregate",
     "order_by", "select_related", "prefetch_related"}
)  # fmt: skip

# Reads that were once defined in a service module; each one lives in reviewer/selectors/ now.
MOVED_READS = frozenset(
    {
        "head_revision", "chain_of", "blinded_for", "blind_analysis", "can_arbitrate", "annotation_queue",
        "min_confidence", "feedback_of", "current_feedback", "credited_seconds", "active_seconds",
        "outcome_counts", "agreement_by_condition", "iter_reading_rows", "reading_time_summary",
        "training_feedback", "active_pipeline",
    }
)  # fmt: skip


def _called(fn: ast.AST) -> tuple[set[str], set[str]]:
    """(attribute names called or read on something, bare names called) inside ``fn``."""
    attributes, names = set(), set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute):
            attributes.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            names.add(node.func.id)
    return attributes, names


def _writes_directly(fn: ast.FunctionDef, attributes: set[str], imported_writes: set[str]) -> bool:
    decorated_atomic = any("atomic" in ast.unparse(d) for d in fn.decorator_list)
    _, names = _called(fn)
    return decorated_atomic or bool(attributes & WRITE_CALLS) or bool(names & imported_writes)


def pure_reads(source: str) -> list[str]:
    """The public module-level functions of a service module that query the database and never
    write: no ORM or cache write, no row lock or transaction, no task sent, and no call of a
    function of this module or of another service that writes (a fixpoint over the module).
    Such a function is a selector in the wrong room."""
    tree = ast.parse(source)
    imported_writes = {  # names a service module takes from other writers
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith(("reviewer.services", "reviewer.integrations", "reviewer.tasks"))
        for alias in node.names
    } | {"audit"}
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    calls = {name: _called(fn) for name, fn in functions.items()}
    writers = {n for n, fn in functions.items() if _writes_directly(fn, calls[n][0], imported_writes)}
    while True:
        more = {n for n in functions if n not in writers and (calls[n][1] & writers)}
        if not more:
            break
        writers |= more
    return sorted(
        name
        for name, fn in functions.items()
        if not name.startswith("_") and name not in writers and calls[name][0] & QUERY_NAMES
    )


def test_the_read_finder_tells_a_read_from_a_write() -> None:
    source = (
        "from reviewer.services.audit import audit\n"
        "def newest(study):\n    return study.drafts.order_by('-id').first()\n"
        "def rename(study):\n    study.name = 'x'\n    study.save()\n"
        "def _helper():\n    return Study.objects.create()\n"
        "def via_helper():\n    Study.objects.filter(pk=1)\n    return _helper()\n"
        "@transaction.atomic\ndef locked():\n    return Study.objects.get(pk=1)\n"
        "def audited(study):\n    audit(actor=None, action='x', obj=study)\n    return study.reviews.count()\n"
        "def pure(text):\n    return text.strip()\n"
    )
    assert pure_reads(source) == ["newest"]


def test_reads_are_not_written_in_services() -> None:
    """A function in ``reviewer/services/`` that only queries belongs in ``reviewer/selectors/``:
    services are what changes the database, so a reader of the code (and a reviewer of a blinding
    change) finds every read in one room."""
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python_files("reviewer/services")
        for name in pure_reads(path.read_text())
    ]
    assert found == [], "reads in services (move them to reviewer/selectors/): " + ", ".join(found)
    defined = {
        f"{path.relative_to(ROOT)}: {node.name}"
        for path in _python_files("reviewer/services")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in MOVED_READS
    }
    assert not defined, f"defined in services again: {sorted(defined)}"
