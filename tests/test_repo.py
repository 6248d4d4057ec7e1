"The repository's own invariants: README generated from index.ipynb, modules exported from the notebooks, index.ipynb runs."
import contextlib, io, re, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

def test_readme_matches_index():
    r = subprocess.run([sys.executable, 'tools/make_readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_modules_match_notebooks(tmp_path):
    "nbdev_export of the committed notebooks reproduces the committed modules (nobody hand-edited near_nb/*.py)."
    for f in ['settings.ini', 'setup.py']: shutil.copy(ROOT/f, tmp_path/f)
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    (tmp_path/'near_nb').mkdir()
    shutil.copy(ROOT/'near_nb'/'__init__.py', tmp_path/'near_nb'/'__init__.py')
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev_export')], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mods = sorted(p.name for p in (ROOT/'near_nb').glob('*.py') if p.name != '_modidx.py')
    assert mods == sorted(p.name for p in (tmp_path/'near_nb').glob('*.py') if p.name != '_modidx.py')
    for m in mods:
        assert (tmp_path/'near_nb'/m).read_text() == (ROOT/'near_nb'/m).read_text(), f'{m} differs from its notebook: run nbdev_export'

def test_index_notebook_runs():
    from nbdev.test import test_nb
    ok, _ = test_nb(ROOT/'index.ipynb', do_print=False)
    assert ok, 'index.ipynb failed to run top to bottom'

def _code_stats():
    "tools/code_stats.py as a module (the import graph the closing figures report, too)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('code_stats', ROOT/'tools'/'code_stats.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

def _import_problems(pkg:Path) -> tuple:
    "(cycles of the intra-package import graph, 'module -> target' for each package import inside a function)."
    cs = _code_stats()
    mods = cs.modules(pkg)
    graph, inside = {}, []
    for name, path in mods.items():
        imps = cs.intra_imports(path, set(mods))
        graph[name] = {t for t, _ in imps if t not in (name, 'near_nb')}
        inside += [f'{name} -> {t}' for t, in_fn in imps if in_fn]
    return cs.cycles(graph), inside

def test_imports_flow_one_way():
    "No import cycle between near_nb's modules, and every package import sits at the top of its module."
    cycles, inside = _import_problems(ROOT/'near_nb')
    assert cycles == [], f'import cycles: {cycles}'
    assert inside == [], f'package imports inside functions (move them to the top of the module): {inside}'

def test_import_check_finds_problems(tmp_path):
    "The check above fails on a cycle and on an in-function import (so passing it means something)."
    (tmp_path/'a.py').write_text('from .b import f\n')
    (tmp_path/'b.py').write_text('def f():\n    from .a import g\n    import near_nb.c\n')
    (tmp_path/'c.py').write_text('import near_nb\n')
    cycles, inside = _import_problems(tmp_path)
    assert [sorted(c) for c in cycles] == [['a', 'a', 'b']]
    assert sorted(inside) == ['b -> a', 'b -> c']

@pytest.mark.parametrize('page', ['README.md', 'docs/results.md'])
def test_printed_tables_match_their_json(page, monkeypatch):
    "Each table a page prints from bench/results/*.json is what its code prints now: figures copied, never typed."
    pairs = re.findall(r'```python\n(.*?)```\n\n```\n(.*?)```', (ROOT/page).read_text(encoding='utf-8'), re.S)
    pairs = [(code, shown) for code, shown in pairs if 'bench/results' in code]
    assert pairs, f'{page} prints no table from bench/results'
    monkeypatch.chdir(ROOT)
    ns = {}
    for code, shown in pairs:
        out = io.StringIO()
        with contextlib.redirect_stdout(out): exec(code, ns)
        assert out.getvalue().rstrip() == shown.rstrip(), f'{page}: a table differs from what its code prints now'

def test_ci_runs_the_readme_test_command():
    "CI runs exactly the README's test command, and that command runs the notebooks and pytest on every core."
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    cmd = re.search(r'^(bash dev\.sh test)\b', readme, re.M).group(1)
    ci = [l.strip() for l in (ROOT/'.ci'/'run').read_text().splitlines() if l.strip() and not l.lstrip().startswith('#')]
    assert ci[-1] == cmd, ci[-1]
    dev = (ROOT/'dev.sh').read_text()
    assert 'nbdev_test" --n_workers "$WORKERS"' in dev
    assert 'pytest tests -n "$WORKERS" --dist loadfile' in dev
