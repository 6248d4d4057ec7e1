"How the site reads a notebook: as nbformat does, with `#| eval: false` cells shown but never run (as nbdev_test)."
import re
import nbformat

_NO_EVAL = re.compile(r'^#\|\s*eval:\s*false', re.M)

def read_notebook(text:str) -> nbformat.NotebookNode:
    "The notebook in `text`, its `#| eval: false` code cells tagged `skip-execution` (nbclient leaves them unrun)."
    nb = nbformat.reads(text, as_version=4)
    for c in nb.cells:
        if c.cell_type == 'code' and _NO_EVAL.search(c.source):
            c.metadata.setdefault('tags', []).append('skip-execution')
    return nb
