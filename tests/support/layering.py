"""The layering contract of src/portatlas, checked by walking the imports (ast, no import).

Layers, top to bottom; a module may import its own layer and the layers below it, never one
above (docs/architecture.md):

    front     portatlas.cli, portatlas.web, portatlas.__main__
    render    portatlas.render
    facade    portatlas (the package's __init__: lookup(), search(), ... over Atlas)
    domain    portatlas.kb, .history, .local, .scan, .identify, .changes, .exposure, .atlas,
              .ranking, .sections, .howto
    core      portatlas.model, .errors, .parsing, .paths, .textsafe, .vocab, .io_limits

and besides: portatlas.web never imports portatlas.cli, and there is no import cycle among the
modules of src/ (function-level imports included; imports under `if TYPE_CHECKING:` are left out
of the cycle check, as they never run, but not of the layer check).

`from portatlas import __version__` is not an import of the facade (the package __init__ imports
nothing at module level). An import is read wherever it is in a module (module level, inside functions, inside try);
`importlib.import_module("portatlas....")` with a literal name and the module strings of
registries (SECTIONS, COMMANDS) are not imports and are not checked.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

LAYERS = ("core", "domain", "facade", "render", "front")  # low to high

# module or package prefix -> layer (the longest prefix wins; "portatlas" alone is the facade)
PLACES = {
    "portatlas.__main__": "front",
    "portatlas.cli": "front",
    "portatlas.web": "front",
    "portatlas.render": "render",
    "portatlas.kb": "domain",
    "portatlas.history": "domain",
    "portatlas.local": "domain",
    "portatlas.scan": "domain",
    "portatlas.identify": "domain",
    "portatlas.cluster": "domain",
    "portatlas.changes": "domain",
    "portatlas.atlas": "domain",
    "portatlas.ranking": "domain",
    "portatlas.sections": "domain",
    "portatlas.howto": "domain",
    "portatlas.exposure": "domain",
    "portatlas.model": "core",
    "portatlas.errors": "core",
    "portatlas.io_limits": "core",
    "portatlas.parsing": "core",
    "portatlas.paths": "core",
    "portatlas.textsafe": "core",
    "portatlas.vocab": "core",
    "portatlas.stamps": "core",
    "portatlas": "facade",
}

# (importer prefix, imported prefix) pairs that are refused even where the layers allow them
FORBIDDEN = (("portatlas.web", "portatlas.cli"),)

# Allowed exceptions: (importer, imported) -> the reason. Keep this empty or short.
EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    function_level: bool
    type_checking: bool


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__) for every .py under root (the
    directory of the top package)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_pkg)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(root: Path) -> list[Import]:
    """Every import of a module of the package by another of its modules."""
    mods = modules(root)
    top = root.name
    out: list[Import] = []

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

        def visit(node: ast.AST, in_function: bool, in_tc: bool) -> None:
            for child in ast.iter_child_nodes(node):
                func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                         ast.Lambda))
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for sub in child.body:
                        visit_one(sub, func, True)
                    for sub in child.orelse:
                        visit_one(sub, func, in_tc)
                    continue
                visit_one(child, func, in_tc)

        def visit_one(child: ast.AST, func: bool, tc: bool) -> None:
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                if source == top and all(a.name == "__version__" for a in child.names):
                    return  # the version string, not the facade (portatlas/__init__ imports nothing)
                subs = [f"{source}.{a.name}" for a in child.names if f"{source}.{a.name}" in mods]
                targets = subs + ([source] if len(subs) < len(child.names) else [])
            for target in targets:
                if target.split(".")[0] != top:
                    continue
                known = owner(target)
                if known and known != mod:
                    out.append(Import(mod, known, child.lineno, func, tc))
            visit(child, func, tc)

        visit(tree, False, False)
    return out


def place(module: str) -> str:
    if module in PLACES:  # "portatlas" (the facade) is matched exactly, not as a prefix
        return PLACES[module]
    for prefix in sorted(PLACES, key=len, reverse=True):
        if prefix != "portatlas" and module.startswith(prefix + "."):
            return PLACES[prefix]
    raise KeyError(f"{module} is in no layer: add it to PLACES in tests/support/layering.py")


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(found: list[Import]) -> list[str]:
    """Each import that goes up a layer or is forbidden, as 'importer:line -> target (why)'."""
    bad = []
    for imp in found:
        if (imp.importer, imp.target) in EXCEPTIONS:
            continue
        low, high = place(imp.target), place(imp.importer)
        if LAYERS.index(low) > LAYERS.index(high):
            bad.append(f"{imp.importer}:{imp.line} -> {imp.target} ({high} imports {low})")
            continue
        for a, b in FORBIDDEN:
            if _under(imp.importer, a) and _under(imp.target, b):
                bad.append(f"{imp.importer}:{imp.line} -> {imp.target} ({a} never imports {b})")
    return bad


def cycles(found: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), over imports that run."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        if not imp.type_checking:
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        # iterative Tarjan: (node, iterator over its successors)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def cycle_edges(found: list[Import], group: list[str]) -> list[str]:
    members = set(group)
    return sorted({f"{i.importer}:{i.line} -> {i.target}" for i in found
                   if i.importer in members and i.target in members and not i.type_checking})


# Modules held to the rule for function-level imports: only where they pay (the cold start of
# `portatlas PORT`, a dependency or a part of portatlas a build may lack, a platform module,
# one option's heavy machinery), each with a comment saying so - on the line, or on the line
# above the group of imports it covers (docs/architecture.md). The whole package.
LAZY_STRICT = ("portatlas",)

# Packages exempt while they are reworked (none today: every package is held to the rule).
LAZY_TO_FOLLOW: tuple[str, ...] = ()


def unexplained_lazy_imports(root: Path, strict: tuple[str, ...] = LAZY_STRICT,
                             exempt: tuple[str, ...] = LAZY_TO_FOLLOW) -> list[str]:
    """Function-level imports without a comment, in the modules under `strict` but not under
    `exempt`."""
    bad = []
    for mod, (path, _) in modules(root).items():
        if not any(_under(mod, prefix) for prefix in strict):
            continue
        if any(_under(mod, prefix) for prefix in exempt):
            continue
        lines = path.read_text(encoding="utf-8").split("\n")
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not _explained(lines, node.lineno):
                    bad.append(f"{mod}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(bad))


def _explained(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or above it (over a run of import lines)."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0:
        text = lines[i].strip()
        if text.startswith("#"):
            return True
        if not (text.startswith(("import ", "from ")) or text.endswith(",") or text.endswith(")")):
            return False
        if "#" in text:
            return True
        i -= 1
    return False


def main(argv: list[str]) -> int:
    """`python tests/support/layering.py [PACKAGE_DIR]`: print every violation and cycle; exit
    1 when there is any (the same check as tests/test_layering.py)."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "src" / "portatlas"
    found = imports(root)
    bad = violations(found)
    groups = cycles(found)
    for line in bad:
        print(f"layer violation: {line}")
    for group in groups:
        print(f"import cycle: {' <-> '.join(group)}: {'; '.join(cycle_edges(found, group))}")
    print(f"{len(found)} imports, {len(bad)} layer violations, {len(groups)} cycles")
    return 1 if bad or groups else 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
