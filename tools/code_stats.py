"""Code figures for the package: module sizes, the intra-package import graph, `;` lines, long lines, tests.

Usage: `python tools/code_stats.py [REPO_ROOT]` (defaults to this checkout). Prints one block of plain text.
"""
import ast, io, json, sys, tokenize
from pathlib import Path


def modules(pkg:Path):
    "The package's modules (name -> path), generated index files excluded."
    return {p.stem: p for p in sorted(pkg.glob('*.py')) if p.stem not in ('_modidx', '__init__')}


def intra_imports(path:Path, names:set):
    "(target, in_function) for every import of a sibling module in `path`, top level and inside functions."
    names = set(names) | {'near_nb'}
    tree = ast.parse(path.read_text())
    found = []
    def visit(node, in_fn):
        for child in ast.iter_child_nodes(node):
            fn = in_fn or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                mod = child.module or ''
                if child.level >= 1:
                    targets = [mod.split('.')[0]] if mod else [a.name for a in child.names]
                elif mod.startswith('near_nb'):
                    rest = mod.split('.')[1:]
                    targets = rest[:1] if rest else [a.name for a in child.names]
                else:
                    targets = []
                found.extend((t, in_fn) for t in targets if t in names)
            elif isinstance(child, ast.Import):  # `import near_nb` itself counts as 'near_nb'
                parts = [a.name.split('.') for a in child.names if a.name.split('.')[0] == 'near_nb']
                found.extend((ps[1] if len(ps) > 1 else 'near_nb', in_fn) for ps in parts
                             if len(ps) == 1 or ps[1] in names)
            visit(child, fn)
    visit(tree, False)
    return found


def joined_lines(path:Path):
    "Line numbers where `;` joins two statements (found with tokenize, so strings and comments do not count)."
    toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return sorted({t.start[0] for t in toks if t.type == tokenize.OP and t.string == ';'})


def cycles(graph:dict):
    "Every import cycle in `graph` (module -> set of modules), each as a list of modules."
    found, seen = [], set()
    def walk(node, stack):
        if node in stack:
            cyc = stack[stack.index(node):]
            key = frozenset(cyc)
            if key not in seen:
                seen.add(key)
                found.append(cyc + [node])
            return
        for nxt in sorted(graph.get(node, ())):
            walk(nxt, stack + [node])
    for n in sorted(graph):
        walk(n, [])
    return found


def test_count(root:Path):
    "Notebooks in nbs/ (each one an nbdev test) and pytest test functions in tests/."
    nbs = [p for p in (root/'nbs').rglob('*.ipynb')
           if not p.name.startswith('_') and '.ipynb_checkpoints' not in str(p)]
    n_py = 0
    for p in sorted((root/'tests').glob('test_*.py')):
        tree = ast.parse(p.read_text())
        n_py += sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith('test')
                    for n in ast.walk(tree))
    return len(nbs), n_py


def stats(root:Path):
    "All the figures for the checkout at `root`, as a dict."
    mods = modules(root/'near_nb')
    names = set(mods)
    out = dict(lines={}, edges={}, in_function={}, joined={}, long={})
    for name, path in mods.items():
        text = path.read_text().splitlines()
        imps = intra_imports(path, names)
        out['lines'][name] = len(text)
        out['edges'][name] = sorted({t for t, _ in imps if t not in (name, 'near_nb')})
        out['in_function'][name] = sum(fn for _, fn in imps)
        out['joined'][name] = len(joined_lines(path))
        out['long'][name] = sum(len(line) > 120 for line in text)
    out['cycles'] = cycles({k: set(v) for k, v in out['edges'].items()})
    out['notebooks'], out['pytest_functions'] = test_count(root)
    return out


def report(s:dict):
    "The figures as plain text."
    rows = [f"{'module':<12} {'lines':>6} {'`;`':>5} {'>120':>5} {'in-fn imports':>14}  imports"]
    for m in s['lines']:
        rows.append(f"{m:<12} {s['lines'][m]:>6} {s['joined'][m]:>5} {s['long'][m]:>5} {s['in_function'][m]:>14}  "
                    + ', '.join(s['edges'][m]))
    tot = lambda k: sum(s[k].values())
    rows.append(f"{'total':<12} {tot('lines'):>6} {tot('joined'):>5} {tot('long'):>5} {tot('in_function'):>14}")
    rows.append(f"edges: {sum(len(v) for v in s['edges'].values())}; "
                f"cycles: {[' -> '.join(c) for c in s['cycles']] or 'none'}")
    rows.append(f"tests: {s['notebooks']} notebooks + {s['pytest_functions']} pytest functions")
    return '\n'.join(rows)


if __name__ == '__main__':
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    s = stats(root)
    print(json.dumps(s) if '--json' in sys.argv else report(s))
