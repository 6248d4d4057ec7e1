"""The front door: `import near_nb` gives the main API by name, loads nothing heavy until a name is used,
and every public function, class and method of every module shows its parameters and their meaning in help()."""
import configparser, importlib, inspect, json, pkgutil, pydoc, subprocess, sys
import pytest
from fastcore.docments import docments
from conftest import ROOT
import near_nb

MODULES = sorted(m.name for m in pkgutil.iter_modules(near_nb.__path__) if not m.name.startswith('_'))

def test_every_name_is_its_modules_object():
    "A name renamed or moved in its module fails here, with the name."
    for m, names in near_nb.FRONT_DOOR.items():
        mod = importlib.import_module(f'near_nb.{m}')
        for n in names:
            assert n in mod.__all__, f'near_nb.{n}: {m}.__all__ has no {n!r} (renamed? fix FRONT_DOOR)'
            assert getattr(near_nb, n) is getattr(mod, n), n
    given = [n for ns in near_nb.FRONT_DOOR.values() for n in ns]
    assert len(given) == len(set(given)), 'a name is given twice'
    extra = {'FRONT_DOOR', 'parameters', 'document_module'}
    assert set(given) | extra == set(dir(near_nb)) == set(near_nb.__all__)
    with pytest.raises(AttributeError, match='no_such_name'): near_nb.no_such_name

def test_version_and_docstring():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT/'settings.ini')
    assert near_nb.__version__ == ini['DEFAULT']['version']
    doc = near_nb.__doc__
    assert doc.startswith('Vocabulary-free fine-grained recognition') and 'The pipeline' in doc
    for n in ('label_images', 'Backbone', 'fit_near_head', 'NearClassifier', 'evaluate', 'sample'):
        assert n in doc, n

def test_import_is_light():
    "A fresh `import near_nb` loads no torch, numpy or package module; a name loads its own module only."
    code = ("import sys, near_nb; a = set(sys.modules); near_nb.knn; b = set(sys.modules)\n"
            "top = ('torch', 'numpy', 'pandas')\n"
            "heavy = sorted(m for m in a if m.split('.')[0] in top or m.startswith('near_nb.'))\n"
            "print(__import__('json').dumps([heavy, sorted(m for m in b - a if m.startswith('near_nb.'))]))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, check=True)
    before, loaded = json.loads(r.stdout)
    assert before == []
    assert 'near_nb.neighbors' in loaded and 'near_nb.mllm' not in loaded, loaded

def _public(mod) -> list:
    "(label, object) of each public function, class and method (class, static, patched) a module defines."
    out = []
    for n in mod.__all__:
        o = getattr(mod, n)
        if inspect.isfunction(o) and o.__module__ == mod.__name__: out.append((n, o))
        if not (inspect.isclass(o) and o.__module__ == mod.__name__): continue
        out.append((n, o))
        for k, v in vars(o).items():
            f = near_nb._function(v)
            if not k.startswith('_') and f is not None: out.append((f'{n}.{k}', getattr(o, k)))
    return out

@pytest.mark.parametrize('modname', MODULES)
def test_help_shows_every_parameter(modname):
    """Each public function, class and method of the module: `help()` lists every parameter of its signature,
    with the meaning fastcore's `docments` finds for it (the docs site's source)."""
    mod = importlib.import_module(f'near_nb.{modname}')
    checked = 0
    for label, obj in _public(mod):
        rows = near_nb.parameters(obj)
        try: sig = [p for p in inspect.signature(obj).parameters if p not in ('self', 'cls')]
        except ValueError: sig = []  # an exception class: nothing to document
        named = [n.lstrip('*') for n, *_ in rows if n != 'return']
        assert named == sig, f'{modname}.{label}: {rows} vs {sig}'
        # every meaning fastcore's docments finds, `parameters` finds for the same name (it finds more: one
        # comment beside several parameters on a line documents each, and a comment beside `**kw` is kw's, not
        # the return's; the notebook cell marker above a one-line `def` is no parameter's)
        mine = {n.lstrip('*'): m for n, _, _, m in rows}
        for k, v in docments(obj).items():
            if k in ('self', 'cls') or not v or v.startswith('%%'): continue
            assert mine.get(k) == v or (k == 'return' and v in mine.values()), f'{modname}.{label}.{k}: {v!r}'
        if not rows: continue
        text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
        if named: assert 'Parameters\n' in text, f'{modname}.{label}: no Parameters in help()'
        for name, _, _, meaning in rows:
            shown = 'Returns' if name == 'return' else name
            assert shown in text and (meaning is None or meaning in text), f'{modname}.{label}: {name}'
        checked += 1
    assert checked or not _public(mod), modname

def test_patched_and_class_methods():
    "A classmethod added by `@patch(cls_method=True)` and a dataclass's fields get their section too."
    from near_nb.classifier import NearClassifier
    from near_nb.near import NearConfig
    doc = inspect.getdoc(NearClassifier.from_pretrained)
    assert '\nParameters\n----------\nsrc\n' in doc, doc
    assert 'pretrained : str | None, default None' in doc, doc
    assert 'k : int, default 3\n    neighbours, where a part reads them' in inspect.getdoc(NearConfig)

def test_hook_keeps_modules_whole():
    "Modules found through the hook keep their source and loader; it documents each module once."
    mod = importlib.import_module('near_nb.neighbors')
    assert type(mod.__spec__.loader).__name__ == '_DocumentingLoader'
    assert 'def knn' in inspect.getsource(mod)
    assert mod.__loader__.get_source(mod.__name__) == inspect.getsource(mod)
    before = mod.knn.__doc__
    assert near_nb.document_module(mod) == 0 and mod.knn.__doc__ == before
    assert sum(type(f).__name__ == '_DocumentingFinder' for f in sys.meta_path) == 1
    assert importlib.util.find_spec('json').loader.__class__.__name__ != '_DocumentingLoader'
