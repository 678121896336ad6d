"""The import graph of recbole_bifair, read from the source with ``ast``: no cycle, every import
points down the layers of the data flow, and every module imports on its own.

The layers (``LAYERS``), bottom up:

0. the foundation: ``errors``, ``fileio`` (atomic files), ``schema`` (the config-key table and the
   keys a run records), ``logging_setup``, ``cli`` (flags and one-line errors);
1. ``compat``: RecBole's workarounds and checkpoint loading (of the plugin, it imports ``errors``);
2. ``embedding``: item text -> embeddings;
3. ``data``: columns, download, loaders, sequence windows;
4. ``fairness``: the item groups (from the training split), the collector, the group metrics,
   reports and rankings. They read RecBole's datasets and the evaluation's score tensors, never
   a model or a trainer, and the model reads the item groups (its score offsets), so they sit
   under the model although the metrics come after training in the data flow, as RecBole's
   evaluator sits under its trainer;
5. ``model`` and ``methods``: the item table and the LLM-enhanced models, and the fairness methods
   (what each changes in training and ranking; a model builds its method, a method adds its
   parameters to the model and reads the item groups);
6. ``trainer``: RecBole's loop with the plugin's checkpoints, the per-group loop and BiFair's outer
   level, several processes;
7. resolution: ``utils`` (classes by name, the trainers included), ``config`` (``BiFairConfig``
   resolves the model class, as RecBole's ``Config`` does, and checks keys with the data,
   embedding and model modules that own them), and the package itself (``setup()`` installs
   ``compat`` and registers the group metrics);
8. one run: ``quick_start``, ``prior_probe`` (an evaluation after training);
9. the commands: ``run``, ``embed``, ``tune``.

A module may import modules of its own layer and of the layers below it, at the top or inside a
function, never one above (``EXCEPTIONS`` would list the justified ones; there are none).
"""

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "recbole_bifair"

#: Layer of each part of the package, named relative to it ("" is the package itself); the
#: longest name that is the module or one of its packages decides.
LAYERS = {
    "errors": 0, "fileio": 0, "schema": 0, "logging_setup": 0, "cli": 0,
    "compat": 1,
    "embedding": 2,
    "data": 3,
    "fairness": 4,
    "model": 5, "methods": 5,
    "trainer": 6,
    "utils": 7, "config": 7, "": 7,
    "quick_start": 8, "prior_probe": 8,
    "run": 9, "embed": 9, "tune": 9,
}

#: ``(importer, imported): why`` for imports that go up a layer.
EXCEPTIONS = {}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    local: bool  # inside a function: runs when it is called
    implied: bool = False  # a package's __init__ that Python runs before the named module

    def __str__(self):
        how = "its package's __init__, run by the import on" if self.implied else (
            "inside a function" if self.local else "top level")
        return f"{self.source} -> {self.target} ({how}, line {self.line})"


def module_files():
    """``{module name: path}`` of every module of the package."""
    files = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _named(statement, source, is_package, known):
    """The modules of the package that an import statement names."""
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    base = statement.module or ""
    if statement.level:
        parts = source.split(".")[: len(source.split(".")) - statement.level + is_package]
        base = ".".join(parts + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in statement.names]


def _owner(name, known):
    """The module ``name`` is or lives in (``import a.b.C``-style names end at a module)."""
    while name not in known:
        name = name.rpartition(".")[0]
    return name


def _packages_run_first(source, target, known):
    """The packages above ``target`` whose __init__ an import of it runs: every one except the
    package root (whose body imports nothing, ``test_the_package_root_imports_nothing``) and
    those that hold ``source`` (already running when ``source`` runs)."""
    parts = target.split(".")
    for end in range(2, len(parts)):
        package = ".".join(parts[:end])
        if package in known and not (source == package or source.startswith(package + ".")):
            yield package


def _top_level(tree):
    """The ids of the nodes that run when the module is imported (an import under a top-level
    `if` or `try` too)."""
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(inner) for inner in ast.walk(node)}
    return top


def module_imports(source, path, known):
    """Every import of a module of the package in ``source``, top level and inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = _top_level(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        local = id(node) not in top
        for name in _named(node, source, path.name == "__init__.py", known):
            if name != PACKAGE and not name.startswith(PACKAGE + "."):
                continue
            target = _owner(name, known)
            if target == source:
                continue
            found.append(Import(source, target, node.lineno, local))
            found += [Import(source, package, node.lineno, local, implied=True)
                      for package in _packages_run_first(source, target, known)]
    return list(dict.fromkeys(found))  # `from m import a, b` names m once per name


def module_graph():
    known = module_files()
    return [edge for name, path in known.items() for edge in module_imports(name, path, known)]


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module):
    relative = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    matches = [key for key in LAYERS
               if relative == key or (key and relative.startswith(key + "."))]
    assert matches, f"{module} has no layer: add its name to LAYERS"
    return LAYERS[max(matches, key=len)]


def test_no_import_cycle():
    edges = module_graph()
    found = cycles(edges)
    detail = []
    for component in found:
        members = set(component)
        detail += [f"  {edge}" for edge in edges if edge.source in members and edge.target in members]
    assert not found, "import cycles:\n" + "\n".join(
        [" <-> ".join(c) for c in found] + ["the imports inside them:"] + detail)


def test_imports_point_down_the_layers():
    for name in module_files():
        layer(name)  # every module has one
    upward = [edge for edge in module_graph()
              if layer(edge.target) > layer(edge.source) and (edge.source, edge.target) not in EXCEPTIONS]
    assert not upward, "imports of a higher layer:\n" + "\n".join(
        f"  {edge}: layer {layer(edge.source)} imports layer {layer(edge.target)}" for edge in upward)


def test_the_package_root_imports_nothing():
    """``import recbole_bifair`` loads no submodule (so ``--help`` answers at once, and the graph
    above need not count the root among the packages every import runs)."""
    known = module_files()
    assert [edge for edge in module_imports(PACKAGE, known[PACKAGE], known) if not edge.local] == []


def _commented(lines, index):
    """Whether the import on ``lines[index]`` has a comment on its line or above its block."""
    if "#" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("import ", "from ")):
        index -= 1
    return index > 0 and lines[index - 1].strip().startswith("#")


def test_function_local_imports_say_why():
    """An import of the package inside a function carries its reason (a heavy or optional
    dependency loaded on use) on its line or above its block of imports."""
    known = module_files()
    silent = []
    for name, path in known.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for edge in module_imports(name, path, known):
            if edge.local and not edge.implied and not _commented(lines, edge.line - 1):
                silent.append(str(edge))
    assert not silent, "function-local imports without a reason:\n  " + "\n  ".join(sorted(set(silent)))


def outside_imports():
    """The modules outside the package that its modules import at their top level, sorted."""
    names = set()
    for path in module_files().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = _top_level(tree)
        for node in ast.walk(tree):
            if id(node) in top and isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif id(node) in top and isinstance(node, ast.ImportFrom) and not node.level:
                names.add(node.module)
    return sorted(n for n in names if n != PACKAGE and not n.startswith(PACKAGE + "."))


#: Run by a fresh interpreter: load the modules named in argv[1] (comma-separated; those that are
#: not installed are left to the package's own handling), then import each module of argv[2:] in
#: its own forked child, two at a time; print ``module<TAB>error`` for each that fails.
_IMPORT_EACH = """
import importlib, multiprocessing, sys

def attempt(module):
    try:
        importlib.import_module(module)
    except BaseException as err:
        return module, f"{type(err).__name__}: {err}".splitlines()[0]
    return module, None

if __name__ == "__main__":
    for name in sys.argv[1].split(","):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
        for module, error in pool.imap_unordered(attempt, sys.argv[2:]):
            if error:
                print(f"{module}\t{error}")
"""


def test_every_module_imports_alone():
    """Each module imports with no other module of the package loaded before it: a cycle hidden
    from ``ast`` (an ``importlib`` call) or an order that works only after another import shows
    here. Each import runs in its own forked child of an interpreter that has loaded what the
    package imports from outside (torch, RecBole, Ray ...) and nothing of the package: one fresh
    interpreter per module took 4 minutes on 2 shared cores, nearly all of it loading torch and
    RecBole again. ``__main__`` modules run a command: skipped."""
    names = [name for name in module_files() if not name.endswith(".__main__")]
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, ",".join(outside_imports()), *names], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "", "modules that do not import alone:\n" + done.stdout
