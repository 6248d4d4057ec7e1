"A labeler or describer installed with pip (an entry point, no register call) is seen by `near label` and `get_describer`."
import json, shutil, sys
import pandas as pd
import pytest
from near_nb.cli import main
from near_nb.data import sample
from near_nb.describe import DESCRIBERS, get_describer
from near_nb.mllm import LABELERS

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

@pytest.fixture
def installed(tmp_path, monkeypatch):
    "The plugin as pip would install it, for this process: its folder on the path, entry points read anew."
    site = install_plugin(tmp_path/'site')
    monkeypatch.syspath_prepend(str(site))
    for reg in (LABELERS, DESCRIBERS):  # what the registries knew comes back after the test
        monkeypatch.setattr(reg, '_items', dict(reg._items))
        monkeypatch.setattr(reg, '_plugins', None)
    yield site
    sys.modules.pop('near_announcer', None)

def few_images(d, n=3):
    "`n` photos of the shipped sample, copied to `d`."
    d.mkdir()
    for f in sample().images.files[:n]: shutil.copy(f, d/f.name)
    return d

def test_near_label_uses_an_installed_labeler(tmp_path, installed, capsys):
    imgs = few_images(tmp_path/'imgs')
    code = main(['label', str(imgs), '--mllm', 'myplugin:Zinnia', '--store', str(tmp_path/'s.sqlite'),
                 '--out', str(tmp_path/'l.csv'), '--base-url', 'http://127.0.0.1:9/v1'])
    assert code == 0, capsys.readouterr().err
    labels = pd.read_csv(tmp_path/'l.csv')
    assert len(labels) == 3 and set(labels.model) == {'announcer:Zinnia'}
    assert set(labels.response) == {'The plugin says: a **Zinnia Specimen**.'}
    assert [json.loads(n) for n in labels.names] == [['Zinnia Specimen']] * 3

def test_without_the_plugin_the_scheme_is_unknown(tmp_path, capsys, monkeypatch):
    imgs = few_images(tmp_path/'imgs', 1)
    monkeypatch.setattr(LABELERS, '_plugins', None)  # the entry points as this process's path has them
    code = main(['label', str(imgs), '--mllm', 'myplugin:Zinnia', '--store', str(tmp_path/'s.sqlite'),
                 '--out', str(tmp_path/'l.csv')])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path/'l.csv').exists()
    assert "unknown labeler scheme 'myplugin'" in err and "'near_nb.labelers'" in err, err

def test_an_installed_describer_is_listed_and_built(installed):
    d = get_describer('myplugin:Rose', base_url='http://x')
    got = f'{list(DESCRIBERS)} {"myplugin" in LABELERS} {d.model} {sorted(d.options)}'
    assert got == "['hf', 'myplugin', 'openai', 'replay'] True announcer:Rose ['base_url']"
