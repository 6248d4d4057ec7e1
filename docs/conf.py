"""Sphinx configuration of the near_nb site; `python docs/build.py` lays out the pages and runs Sphinx with it."""
import configparser, os, sys
from pathlib import Path

ROOT = Path(os.environ.get('NEAR_DOCS_ROOT', Path(__file__).resolve().parent.parent))
_ini = configparser.ConfigParser(interpolation=None)
_ini.read(ROOT/'settings.ini')
cfg = _ini['DEFAULT']

project, author, copyright = cfg['title'], cfg['author'], cfg['copyright']
release = version = cfg['version']
extensions = ['myst_nb']
_left_out = Path(__file__).parent/'left_out.txt'  # tutorials `build.py --tutorials` leaves out
exclude_patterns = ['**/.ipynb_checkpoints', 'html', 'doctrees', 'left_out.txt']
exclude_patterns += _left_out.read_text().split() if _left_out.exists() else []
html_theme = 'pydata_sphinx_theme'
html_title = f'{project} {version}'
html_baseurl = cfg['doc_host'].rstrip('/') + cfg['doc_baseurl']
html_theme_options = {'github_url': cfg['git_url'], 'show_toc_level': 2, 'navigation_with_keys': False,
                      'header_links_before_dropdown': 4,
                      'secondary_sidebar_items': ['page-toc']}
html_sidebars = {'**': ['sidebar-nav-bs']}
html_show_sourcelink = False
myst_enable_extensions = ['colon_fence']
myst_heading_anchors = 3
suppress_warnings = ['myst.header']  # the README starts at level 1 and the generated API pages at level 2

# The tutorials show the outputs stored with them (tools/run_nb.py runs and stores a notebook; nbdev_test checks
# it still runs). `build.py --execute` runs them at build time instead, offline, on the shipped sample, with a cache
# that skips notebooks that did not change (a cell that raises fails the build).
nb_execution_mode = os.environ.get('NEAR_DOCS_EXECUTE', 'off')
# notebooks are read as nbdev runs them: a `#| eval: false` cell (a server, a key, your files) is shown, not run
sys.path.insert(0, str(Path(__file__).parent))
nb_custom_formats = {'.ipynb': 'nbreader.read_nbdev'}
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# Live ipywidgets need a Python kernel; a static page shows the explorer's text stand-in (and tutorial 1 shows the
# same map as a self-contained page), and loads no widget JavaScript from a CDN.
nb_mime_priority_overrides = [('html', 'application/vnd.jupyter.widget-view+json', None),
                              ('html', 'application/vnd.jupyter.widget-state+json', None)]
nb_ipywidgets_js = {}
# A plotly figure returned by a cell is drawn as HTML with plotly.js inlined (offline, no CDN); plotly's JSON-only
# output has no renderer on a static page.
os.environ.setdefault('PLOTLY_RENDERER', 'notebook')
