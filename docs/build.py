"""Build the documentation site from the repository: the README as the home page, the pages in docs/ (the design,
the results, the reliability promises, how the site is made), one API page per module of near_nb (its exports,
their signatures with the docments beside each parameter, their docstrings), and the tutorials executed at build
time (offline, on the shipped sample).

    python docs/build.py [--out _docs] [--tutorials 01_sample ...]   # the site in OUT/html; sources in OUT/src

`--tutorials` builds only the named tutorials (tests/test_docs.py builds tutorial 1 only, to stay fast; the test
suite runs all the tutorials through nbdev_test anyway).

Needs the `docs` extra (`pip install -e ".[dev,docs]"`)."""
import argparse, configparser, importlib, inspect, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {'_modidx'}
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

def _doc(obj) -> str:
    "nbdev's markdown for one symbol, without its Quarto-only source link."
    from nbdev.showdoc import BasicMarkdownRenderer
    md = BasicMarkdownRenderer(obj)._repr_markdown_()
    md = re.sub(r'^\[source\]\(.*$\n?', '', md, flags=re.M)
    return re.sub(r'^---\s*$', '', md, flags=re.M).strip() + '\n'

def _methods(cls, modname:str) -> list:
    "Public methods of a class defined in (or patched on by) its module, in definition order."
    return [f for n, f in vars(cls).items() if not n.startswith('_') and inspect.isfunction(f)
            and f.__module__ == modname and (f.__doc__ or '').strip()]

def api_page(modname:str, nb:str, summary:str, git_url:str) -> str:
    "One module's page: summary, source notebook, then every export (classes with their public methods)."
    mod = importlib.import_module(f'near_nb.{modname}')
    parts = [f'# near_nb.{modname}', '', f'> {summary}' if summary else '', '',
             f'Source notebook: [`{nb}`]({git_url}/blob/main/{nb}) (exported to `near_nb/{modname}.py`).', '']
    consts = []
    parts.append('## Functions and classes\n')
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            consts.append(name)
            continue
        parts.append(_doc(obj))
        if inspect.isclass(obj):
            parts += [_doc(m) for m in _methods(obj, mod.__name__)]
    if consts:
        parts.append('## Constants\n')
        parts += [f'- `{n}` = `{getattr(mod, n)!r}`' for n in consts]
    return '\n'.join(parts) + '\n'

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
    (src/'api'/'index.md').write_text(f'# API\n\nOne page per module, in the order data flows through them.\n\n'
                                      f'| module | what it holds |\n|---|---|\n{rows}\n\n' + toctree('Modules', names), encoding='utf-8')
    home = home_page(cfg['git_url'], [t.split('/')[-1] for t in tutorials])
    nav = toctree('Tutorials', tutorials) + toctree('Reference', [*PAGES[:-1], 'api/index', PAGES[-1]])
    (src/'index.md').write_text(home + '\n' + nav, encoding='utf-8')

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='output folder (the site goes to OUT/html)')
    ap.add_argument('--tutorials', nargs='*', help='build only these tutorials (names without .ipynb; default: all)')
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    t0 = time.perf_counter()
    layout(out/'src', a.tutorials)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-W', '--keep-going', '-d', str(out/'doctrees'),
           '-D', f'nb_execution_cache_path={out/".jupyter_cache"}', str(out/'src'), str(out/'html')]
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, 'NEAR_DOCS_ROOT': str(ROOT)})
    if r.returncode == 0: print(f'docs: {out/"html"/"index.html"} ({time.perf_counter() - t0:.0f} s)')
    return r.returncode

if __name__ == '__main__': sys.exit(main())
