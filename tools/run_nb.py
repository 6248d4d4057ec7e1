"""Run notebooks top to bottom in a fresh kernel and store them with their outputs (pictures and widget state
included), cleaned as nbdev_clean cleans them. The notebooks are the docs: a reader on GitHub or on the docs site
sees every step's output without running anything.

    python tools/run_nb.py nbs/05_neighbors.ipynb [more.ipynb ...]   # run and store
    python tools/run_nb.py --no-exec nbs/*.ipynb                      # only clean and normalise the JSON
"""
import argparse, os, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbdev.clean import clean_nb

SKIP = 'skip-execution'  # the cell tag nbclient leaves unrun
STUB_ESM = ('export default { render({ el }) { el.textContent = '
            "'(an interactive widget: run the notebook to use it)'; } };")
# plotly's FigureWidget code, the same file as the installed plotly's, linked the way include_plotlyjs='cdn' links
# plotly.js: nbviewer and JupyterLab draw a stored figure from its state
PLOTLY_WIDGET_URL = 'https://cdn.jsdelivr.net/gh/plotly/plotly.py@v{version}/plotly/package_data/widgetbundle.js'

def _is_eval_false(cell) -> bool:
    "nbdev's `#| eval: false` (a cell that needs a key, a GPU or a server): stored unrun, as nbdev_test skips it."
    return cell.cell_type == 'code' and any(l.replace(' ', '') == '#|eval:false' for l in cell.source.splitlines())

def _slim_widgets(nb):
    """The one place stored widgets are slimmed: each anywidget's bundled JavaScript (plotly's FigureWidget carries
    ~5 MB of it) is replaced by a link to the same file (plotly's), or else by a stub that says to run the notebook."""
    import plotly  # the installed version's widget code is the code the state was made for
    state = nb.metadata.get('widgets', {}).get('application/vnd.jupyter.widget-state+json', {}).get('state', {})
    for model in state.values():
        s = model.get('state', {})
        if not (isinstance(s.get('_esm'), str) and len(s['_esm']) > 100_000): continue
        ours = str(s.get('_anywidget_id', '')).startswith('plotly.')
        s['_esm'] = PLOTLY_WIDGET_URL.format(version=plotly.__version__) if ours else STUB_ESM

def run(path:Path, execute:bool=True, timeout:int=900):
    nb = nbformat.read(path, as_version=4)
    skipped = [c for c in nb.cells if _is_eval_false(c) and SKIP not in c.metadata.get('tags', [])]
    for c in skipped: c.metadata.setdefault('tags', []).append(SKIP)
    if execute:
        env_before = dict(os.environ)
        os.environ.setdefault('HF_HUB_OFFLINE', '1')
        os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
        # progress bars (tqdm's, the hub's, transformers' weight loading) would be stored as noise
        os.environ.setdefault('TQDM_DISABLE', '1')
        os.environ.setdefault('HF_HUB_DISABLE_PROGRESS_BARS', '1')
        try:
            NotebookClient(nb, timeout=timeout, kernel_name='python3', store_widget_state=True,
                           resources={'metadata': {'path': str(path.parent)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(env_before)
    for c in skipped:
        c.metadata['tags'].remove(SKIP)
        if not c.metadata['tags']: del c.metadata['tags']
    _slim_widgets(nb)
    clean_nb(nb, clear_all=False, clean_ids=True)
    for c in nb.cells: c.metadata.pop('execution', None)
    nbformat.write(nb, path)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--no-exec', action='store_true', help='only clean and normalise, do not run')
    ap.add_argument('--timeout', type=int, default=900, help='seconds a cell may take')
    args = ap.parse_args()
    for p in args.notebooks:
        t = time.time()
        run(p, execute=not args.no_exec, timeout=args.timeout)
        print(f'{p}: {"ran and stored" if not args.no_exec else "cleaned"} in {time.time() - t:.1f} s', file=sys.stderr)
