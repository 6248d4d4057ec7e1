"""How the docs build reads a notebook: as nbdev runs it, so a cell marked `#| eval: false` (it needs a server, a
key or your own files) is shown on the page but not executed (conf.py's `nb_custom_formats`)."""
import re
import nbformat

EVAL_FALSE = re.compile(r'^#\|\s*eval:\s*false', re.M)

def read_nbdev(text:str) -> nbformat.NotebookNode:
    "The notebook in `text`, each `#| eval: false` code cell tagged `skip-execution` (which nbclient honours)."
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == 'code' and EVAL_FALSE.search(cell.source):
            cell.metadata.setdefault('tags', []).append('skip-execution')
    return nb
