"""The code's architecture, held against its imports: which side each package runs on and what it may import.

Every import of lib/ is read with `ast` — at module level and inside functions alike — so an import made
late to dodge a circle still counts. docs/architecture.md draws the same picture in words.
"""

import ast
import collections
import os

import pytest

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib")

# Each package may import itself, the packages below it, and nothing above. cli/ stands apart: the developer's
# machine never imports the server's packages, only common/.
LAYERS = ["common", "state", "platform", "frontdoor", "supervise", "deploy", "addons", "server"]
MAY_IMPORT = {pkg: set(LAYERS[:i + 1]) for i, pkg in enumerate(LAYERS)}
MAY_IMPORT["cli"] = {"cli", "common"}
TOP_MODULES = {"tinyserv"}  # lib/tinyserv/__init__.py: the version and where the code is
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300


def module_files():
    """{dotted module name: path} for every module under lib/tinyserv."""
    found = {}
    for root, _, files in os.walk(os.path.join(LIB, "tinyserv")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                dotted = os.path.relpath(path, LIB)[:-3].replace(os.sep, ".")
                found[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return found


MODULES = module_files()


def parsed(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def imported_modules(name, path):
    """The tinyserv modules that module `name` imports, anywhere in it (relative imports resolved)."""
    found = set()
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("tinyserv"):
                continue
            for alias in node.names:
                full = base + "." + alias.name
                found.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tinyserv"))
    found.discard(name)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def package_of(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and name in MODULES and
                                             MODULES[name].endswith("__init__.py")) else None


def test_every_module_lives_in_a_package_but_the_few_at_the_top():
    top = sorted(n for n in MODULES if package_of(n) is None and n not in TOP_MODULES)
    assert top == [], "modules directly in lib/tinyserv (put each in the package of its concern): %s" % top


def test_every_package_is_one_the_architecture_names():
    packages = {package_of(n) for n in MODULES} - {None}
    assert packages == set(MAY_IMPORT), "packages: %s; declared: %s" % (sorted(packages), sorted(MAY_IMPORT))


def test_no_import_goes_against_the_declared_direction():
    wrong = []
    for name, targets in sorted(GRAPH.items()):
        mine = package_of(name)
        for target in sorted(targets):
            theirs = package_of(target)
            if mine and theirs and theirs not in MAY_IMPORT[mine]:
                wrong.append("%s imports %s (%s may import only %s)"
                             % (name, target, mine, ", ".join(sorted(MAY_IMPORT[mine]))))
    assert wrong == [], "\n".join(wrong)


def circles(graph):
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_circles_are_found_by_the_check_itself():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_there_is_no_import_circle_counting_imports_inside_functions():
    # A package's __init__ is imported whenever one of its modules is: leave those edges out.
    graph = {n: {t for t in ts if not MODULES.get(t, "").endswith("__init__.py")} for n, ts in GRAPH.items()}
    assert circles(graph) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_600_lines(name):
    with open(MODULES[name], encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    assert lines <= MAX_MODULE_LINES, "%s has %d lines (at most %d)" % (MODULES[name], lines, MAX_MODULE_LINES)


def test_no_class_is_over_300_lines():
    long = []
    for name, path in sorted(MODULES.items()):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    long.append("%s.%s: %d lines" % (name, node.name, length))
    assert long == [], "classes over %d lines: %s" % (MAX_CLASS_LINES, long)


def test_the_import_reader_sees_imports_inside_functions():
    nested = collections.Counter(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for path in MODULES.values() for node in ast.walk(parsed(path))
        if any(isinstance(child, ast.ImportFrom) and (child.module or "").startswith("tinyserv")
               for child in ast.walk(node)))
    # Some function imports a tinyserv module late (remote.py dispatches that way); the graph must hold it.
    assert nested[True] > 0
    late = {("tinyserv.server.remote", "tinyserv.common.printer")}
    assert late <= {(a, b) for a, ts in GRAPH.items() for b in ts}
