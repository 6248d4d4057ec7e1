"A labeler or describer installed with pip (an entry point, no register call) is seen by `near label` and `get_describer`."
import json, os, shutil, subprocess, sys
import pandas as pd
from near_nb.data import sample
from conftest import ROOT

# the `near` command as a fresh process sees it (`python -m near_nb.cli` once cli.py has a __main__ guard)
NEAR = ['-c', 'import sys; from near_nb.cli import main; sys.exit(main())']

PLUGIN = '''
from near_nb.mllm import Answer

class Announcer:
    "A plugin labeler: names every image after the spec's argument, and says which options reached it."
    def __init__(self, arg, **options):
        self.model, self.arg, self.options = f'announcer:{arg}', arg, options
    def settings(self): return {'plugin': self.arg}
    async def answer(self, req): return Answer(f'The plugin says: a **{self.arg} Specimen**.')

def make_labeler(arg, **options): return Announcer(arg, **options)

def make_describer(arg, **options): return Announcer(arg, **options)
'''

def install_plugin(site):
    "Write a distribution as pip leaves it in site-packages: the module and its .dist-info (METADATA, entry points)."
    (site/'near_announcer').mkdir(parents=True)
    (site/'near_announcer'/'__init__.py').write_text(PLUGIN)
    info = site/'near_announcer-0.1.dist-info'
    info.mkdir()
    (info/'METADATA').write_text('Metadata-Version: 2.1\nName: near-announcer\nVersion: 0.1\n')
    (info/'entry_points.txt').write_text('[near_nb.labelers]\nmyplugin = near_announcer:make_labeler\n\n'
                                        '[near_nb.describers]\nmyplugin = near_announcer:make_describer\n')
    (info/'RECORD').write_text('')
    return site

def run(args, site=None, cwd=None):
    "`python ARGS` in a fresh process with the plugin's site folder (if any) on its path."
    path = [str(site)] if site else []
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(path + [str(ROOT)])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)

def few_images(d, n=3):
    "`n` photos of the shipped sample, copied to `d`."
    d.mkdir()
    for f in sample().images.files[:n]: shutil.copy(f, d/f.name)
    return d

def test_near_label_uses_an_installed_labeler(tmp_path):
    site, imgs = install_plugin(tmp_path/'site'), few_images(tmp_path/'imgs')
    r = run([*NEAR, 'label', str(imgs), '--mllm', 'myplugin:Zinnia', '--store', str(tmp_path/'s.sqlite'),
             '--out', str(tmp_path/'l.csv'), '--base-url', 'http://127.0.0.1:9/v1'], site)
    assert r.returncode == 0, r.stderr
    labels = pd.read_csv(tmp_path/'l.csv')
    assert len(labels) == 3 and set(labels.model) == {'announcer:Zinnia'}
    assert set(labels.response) == {'The plugin says: a **Zinnia Specimen**.'}
    assert [json.loads(n) for n in labels.names] == [['Zinnia Specimen']] * 3

def test_without_the_plugin_the_scheme_is_unknown(tmp_path):
    imgs = few_images(tmp_path/'imgs', 1)
    r = run([*NEAR, 'label', str(imgs), '--mllm', 'myplugin:Zinnia', '--store', str(tmp_path/'s.sqlite'),
             '--out', str(tmp_path/'l.csv')])
    assert r.returncode != 0 and not (tmp_path/'l.csv').exists()
    assert "unknown labeler scheme 'myplugin'" in r.stderr and "'near_nb.labelers'" in r.stderr, r.stderr

def test_an_installed_describer_is_listed_and_built(tmp_path):
    site = install_plugin(tmp_path/'site')
    code = ('from near_nb.describe import DESCRIBERS, get_describer; from near_nb.mllm import LABELERS; '
            'd = get_describer("myplugin:Rose", base_url="http://x"); '
            'print(list(DESCRIBERS), "myplugin" in LABELERS, d.model, sorted(d.options))')
    r = run(['-c', code], site, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split('\n')[0] == "['hf', 'myplugin', 'openai', 'replay'] True announcer:Rose ['base_url']"
