"""Build the documentation site from the repository: the README as the home page, the pages in docs/ (the design,
the results, the reliability promises, how the site is made), one API page per module of near_nb (its exports,
each class with its methods, each parameter in a table with its type, default and meaning), and the tutorials with
the outputs stored in them (tools/run_nb.py runs a notebook and stores it; nbdev_test checks they still run).

    python docs/build.py [--out _docs] [--tutorials 01_sample ...] [--execute]   # the site in OUT/html; sources in OUT/src

`--tutorials` builds only the named tutorials; `--execute` runs them while building (offline, on the shipped
sample, with MyST-NB's cache) instead of showing their stored outputs.

Needs the `docs` extra (`pip install -e ".[dev,docs]"`)."""
import argparse, configparser, importlib, inspect, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's near_nb, whatever the venv has installed
import near_nb
from near_nb import parameters

SKIP = {'_modidx', '__init__'}  # the package's __init__ is the front door: the API index lists it
TUTORIALS = 'tutorials'
PAGES = ['design', 'results', 'reliability', 'descriptions', 'gpu', 'about']  # docs/<page>.md, in the order of the site's Reference menu

def settings() -> configparser.SectionProxy:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT/'settings.ini')
    return ini['DEFAULT']

def module_notebooks() -> dict:
    "{module name: (notebook path, title, summary)} from each notebook's `#| default_exp` and first cell."
    out = {}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        exp = next((m.group(1) for c in cells if c['cell_type'] == 'code'
                    for m in [re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)] if m), None)
        if exp is None: continue
        head = ''.join(cells[0]['source']) if cells and cells[0]['cell_type'] == 'markdown' else ''
        summary = ' '.join(l.lstrip('> ').strip() for l in head.splitlines() if l.startswith('>'))
        out[exp] = (nb.relative_to(ROOT).as_posix(), exp, summary)
    return out

SECTION = re.compile(r'\n*^Parameters\n-{10}\n.*\Z', re.M | re.S)  # the section near_nb's import hook adds for help()

def _cell(text) -> str:
    "`text` made safe inside a markdown table cell."
    return '' if text is None else str(text).replace('|', '\\|').replace('\n', ' ')

def _docstring(obj) -> str:
    "The docstring as written (without the Parameters section `help()` shows: the table below has it)."
    return SECTION.sub('', inspect.getdoc(obj) or '').strip()

def _signature(name:str, obj) -> str:
    "`name(a, b:int=1, ...)` as written in the source, one parameter a line past 76 characters (the page's width)."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return ''
    rows = [r for r in parameters(obj) if r[0] != 'return']
    ps = ([n + (f':{t}' if t else '') + (f'={d}' if d is not None else '') for n, t, d, _ in rows] if rows else
          [str(p) for p in sig.parameters.values() if p.name not in ('self', 'cls')])
    ra = sig.return_annotation
    ret = '' if ra is inspect.Signature.empty else f' -> {ra if isinstance(ra, str) else inspect.formatannotation(ra)}'
    one = f'{name}({", ".join(ps)}){ret}'
    body = one if len(one) <= 76 else f'{name}(\n' + ''.join(f'    {p},\n' for p in ps) + f'){ret}'
    return f'```python\n{body}\n```\n'

def _table(obj) -> str:
    "Each parameter in a row: name, type, default, meaning (the docments comment beside it in the source)."
    rows = parameters(obj)
    if not rows: return ''
    out = ['| parameter | type | default | meaning |', '|---|---|---|---|']
    out += [f'| `{_cell(n)}` | {f"`{_cell(t)}`" if t else ""} | {f"`{_cell(d)}`" if d is not None else ""} | {_cell(m)} |'
            for n, t, d, m in rows]
    return '\n'.join(out) + '\n'

def _entry(name:str, obj, level:int=3, kind:str='', sig_of=None) -> str:
    "One documented name: heading, what kind it is, signature, docstring, parameter table."
    title = '#' * level + f' {name}\n'
    return '\n'.join(x for x in [title, f'*{kind}*\n' if kind else '', _signature(name.split('.')[-1], sig_of or obj),
                                  _docstring(obj), '', _table(obj)] if x is not None) + '\n'

def _members(cls) -> list:
    "(name, attribute, kind) of each public method and property of a class, in definition order (patched ones too)."
    out = []
    for n, v in vars(cls).items():
        if n.startswith('_'): continue
        if isinstance(v, property): out.append((n, v, 'property'))
        elif isinstance(v, staticmethod): out.append((n, v.__func__, 'static method'))
        elif isinstance(v, classmethod) or type(v).__name__ == '_clsmethod': out.append((n, getattr(cls, n), 'class method'))
        elif inspect.isfunction(v): out.append((n, v, 'method'))
    return out

def _class_entry(name:str, cls, modname:str) -> str:
    "A class: its constructor's parameters, then each method and property as a sub-entry."
    parts = [_entry(name, cls, kind='class')]
    for n, v, kind in _members(cls):
        f = v.fget if kind == 'property' else v
        where = getattr(f, '__module__', modname)
        kind += f' (added by `{where}`)' if where != modname else ''
        parts.append(_entry(f'{name}.{n}', f, level=4, kind=kind) if kind != 'property' else
                     f'#### {name}.{n}\n\n*{kind}*\n\n{_docstring(f)}\n')
    return '\n'.join(parts)

def api_page(modname:str, nb:str, summary:str, git_url:str) -> str:
    "One module's page: summary, source notebook, then every export (classes with their methods and properties)."
    mod = importlib.import_module(f'near_nb.{modname}')
    parts = [f'# near_nb.{modname}', '', f'> {summary}' if summary else '', '',
             f'Source notebook: [`{nb}`]({git_url}/blob/main/{nb}) (exported to `near_nb/{modname}.py`).', '']
    consts = []
    parts.append('## Functions and classes\n')
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if inspect.isclass(obj): parts.append(_class_entry(name, obj, mod.__name__))
        elif inspect.isfunction(obj): parts.append(_entry(name, obj, kind='function'))
        else: consts.append(name)
    if consts:
        parts.append('## Constants\n')
        parts += [f'- `{n}` = `{_short(getattr(mod, n))}`' for n in consts]
    return '\n'.join(parts) + '\n'

def _short(value) -> str:
    r = repr(value).replace('`', "'")
    return r if len(r) <= 120 else r[:117] + '...'

def front_door_page(summary:str) -> str:
    "The names `import near_nb` gives, by module, each linked to its entry on the module's page."
    rows = [f'| [`{n}`]({m}.md#{n.lower()}) | `near_nb.{m}` | '
            f'{_cell((_docstring(getattr(near_nb, n)).splitlines() or [""])[0])} |'
            for m, ns in near_nb.FRONT_DOOR.items() for n in ns]
    return ('## The front door\n\n'
            f'{summary} `import near_nb` gives these names; each loads its module on first use, so the import stays '
            'light, and `help(near_nb.<name>)` shows every parameter with its meaning.\n\n'
            '| name | module | what it is |\n|---|---|---|\n' + '\n'.join(rows) + '\n\n')

def home_page(git_url:str, built:list) -> str:
    "The README, its repository-relative links pointing at the site's pages (tutorials `built`) or at the repository."
    text = (ROOT/'README.md').read_text(encoding='utf-8')
    def link(m):
        label, target = m.groups()
        if re.match(r'^(https?:|mailto:|#)', target): return m.group(0)
        path, _, anchor = target.partition('#')
        stem = Path(path).stem
        # a tutorial by its document name: a path would resolve through the tutorials' symlink, out of the site
        if path.startswith(f'nbs/{TUTORIALS}/') and stem in built: return f'{{doc}}`{label} <{TUTORIALS}/{stem}>`'
        if path.startswith('docs/') and stem in PAGES:
            return f'[{label}]({stem}.md' + (f'#{anchor})' if anchor else ')')
        return f'[{label}]({git_url}/blob/main/{target})'
    return re.sub(r'\[([^\]]*)\]\(([^)\s]+)\)', link, text)

def toctree(caption:str, entries:list, hidden:bool=True) -> str:
    opts = [f':caption: {caption}', ':maxdepth: 1'] + ([':hidden:'] if hidden else [])
    return '\n'.join(['```{toctree}', *opts, '', *entries, '```', ''])

def layout(src:Path, only:list|None=None):
    "Write the site's sources into `src` (the tutorials are linked, not copied: they run where they live)."
    cfg, mods = settings(), module_notebooks()
    if src.exists(): shutil.rmtree(src)
    (src/'api').mkdir(parents=True)
    for f in ('conf.py', 'nbreader.py'): shutil.copy(ROOT/'docs'/f, src/f)
    for page in PAGES: shutil.copy(ROOT/'docs'/f'{page}.md', src/f'{page}.md')
    (src/TUTORIALS).symlink_to(ROOT/'nbs'/TUTORIALS, target_is_directory=True)
    stems = [p.stem for p in sorted((ROOT/'nbs'/TUTORIALS).glob('*.ipynb'))]
    unknown = set(only or []) - set(stems)
    if unknown: raise SystemExit(f'docs: no tutorial named {sorted(unknown)}; there are {stems}')
    tutorials = [f'{TUTORIALS}/{t}' for t in stems if not only or t in only]
    left_out = [f'{TUTORIALS}/{t}.ipynb' for t in stems if only and t not in only]
    (src/'left_out.txt').write_text('\n'.join(left_out))
    names = [m for m in mods if m not in SKIP]
    for m in names: (src/'api'/f'{m}.md').write_text(api_page(m, mods[m][0], mods[m][2], cfg['git_url']), encoding='utf-8')
    rows = '\n'.join(f'| [`near_nb.{m}`]({m}.md) | {mods[m][2]} |' for m in names)
    door = front_door_page(mods['__init__'][2]) if '__init__' in mods else ''
    (src/'api'/'index.md').write_text(f'# API\n\n{door}## The modules\n\nOne page per module, in the order data flows '
                                      f'through them.\n\n| module | what it holds |\n|---|---|\n{rows}\n\n'
                                      + toctree('Modules', names), encoding='utf-8')
    home = home_page(cfg['git_url'], [t.split('/')[-1] for t in tutorials])
    nav = toctree('Tutorials', tutorials) + toctree('Reference', [*PAGES[:-1], 'api/index', PAGES[-1]])
    (src/'index.md').write_text(home + '\n' + nav, encoding='utf-8')

def copy_plotly(html:Path):
    "One copy of plotly.js in the site's `_static`: the stored map pages of the tutorials link it (offline-safe)."
    import plotly
    (html/'_static').mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(plotly.__file__).parent/'package_data'/'plotly.min.js', html/'_static'/'plotly.min.js')

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='output folder (the site goes to OUT/html)')
    ap.add_argument('--tutorials', nargs='*', help='build only these tutorials (names without .ipynb; default: all)')
    ap.add_argument('--execute', action='store_true',
                    help='run the tutorials while building (cached), instead of showing the outputs stored with them')
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    t0 = time.perf_counter()
    layout(out/'src', a.tutorials)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-W', '--keep-going', '-d', str(out/'doctrees'),
           '-D', f'nb_execution_cache_path={out/".jupyter_cache"}', str(out/'src'), str(out/'html')]
    env = {**os.environ, 'NEAR_DOCS_ROOT': str(ROOT), 'NEAR_DOCS_EXECUTE': 'cache' if a.execute else 'off'}
    r = subprocess.run(cmd, cwd=ROOT, env=env)
    if r.returncode == 0: copy_plotly(out/'html')
    if r.returncode == 0: print(f'docs: {out/"html"/"index.html"} ({time.perf_counter() - t0:.0f} s)')
    return r.returncode

if __name__ == '__main__': sys.exit(main())
