"The repository's own invariants: README generated from index.ipynb, modules exported from the notebooks, index.ipynb runs."
import shutil, subprocess, sys
from pathlib import Path
from conftest import ROOT

def test_readme_matches_index():
    r = subprocess.run([sys.executable, 'tools/make_readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_modules_match_notebooks(tmp_path):
    "nbdev_export of the committed notebooks reproduces the committed modules (nobody hand-edited near_nb/*.py)."
    for f in ['settings.ini', 'setup.py']: shutil.copy(ROOT/f, tmp_path/f)
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    (tmp_path/'near_nb').mkdir(); shutil.copy(ROOT/'near_nb'/'__init__.py', tmp_path/'near_nb'/'__init__.py')
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
