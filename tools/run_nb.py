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

def run(path:Path, execute:bool=True, timeout:int=900):
    nb = nbformat.read(path, as_version=4)
    if execute:
        env_before = dict(os.environ)
        os.environ.setdefault('HF_HUB_OFFLINE', '1')
        os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
        os.environ.setdefault('TQDM_DISABLE', '1')  # progress bars would store as noise
        try:
            NotebookClient(nb, timeout=timeout, kernel_name='python3', store_widget_state=True,
                           resources={'metadata': {'path': str(path.parent)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(env_before)
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
