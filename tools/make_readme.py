"""README.md is generated from index.ipynb (quarto, and so nbdev_readme, is not available here).

    python tools/make_readme.py          # write README.md
    python tools/make_readme.py --check  # exit 1 when README.md is not what index.ipynb generates

Markdown cells are copied; code cells become ```python blocks (nbdev `#|` directives removed, `#| hide`
cells left out) followed by their text outputs.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- generated from index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n'

def _text(x): return ''.join(x) if isinstance(x, list) else x

def render(nb_path=ROOT/'index.ipynb') -> str:
    nb, parts = json.loads(Path(nb_path).read_text(encoding='utf-8')), []
    for c in nb['cells']:
        src = _text(c['source']).rstrip()
        if c['cell_type'] == 'markdown': parts.append(src); continue
        if c['cell_type'] != 'code': continue
        lines = src.splitlines()
        if any(l.strip().replace(' ', '') in ('#|hide', '#|include:false') for l in lines): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if code: parts.append(f'```python\n{code}\n```')
        outs = []
        for o in c.get('outputs', []):
            if o['output_type'] == 'stream': outs.append(_text(o['text']))
            elif o['output_type'] in ('execute_result', 'display_data') and 'text/plain' in o.get('data', {}):
                outs.append(_text(o['data']['text/plain']) + '\n')
        if outs: parts.append('```\n' + ''.join(outs).rstrip() + '\n```')
    return HEADER + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    new, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != new:
            print('README.md is out of date with index.ipynb: run `python tools/make_readme.py`'); sys.exit(1)
        print('README.md matches index.ipynb')
    else: readme.write_text(new, encoding='utf-8'); print('wrote README.md')
