"""`near run` end to end, as a user runs it: killed while it labels, run again, it pays only for what it did not
have, and writes every file; `near map` then draws that run. The MLLM is the local OpenAI-compatible chat server of
`near_nb.testing`, the CLIP a tiny random-weight one (so the command must say so), the images real sample photos."""
import contextlib, io, json, os, shutil, signal, sqlite3, subprocess, sys
import pytest
from conftest import kill_when
from near_nb.cli import main
from near_nb.data import sample
from near_nb.formats import read_table
from near_nb.testing import FakeChatServer, tiny_clip_config

NAMES = ('Rose', 'Tulip', 'Daisy', 'Sunflower')
SAMPLED = 12

def answer(fp:str) -> str: return f'The flower is a **{NAMES[int(fp[:8], 16) % len(NAMES)]}**, clearly.'

@pytest.fixture(scope='module')
def job(tmp_path_factory):
    "Run 1 in a subprocess, killed after 4 stored answers; run 2 in this process, to the end."
    d = tmp_path_factory.mktemp('run')
    photos = d/'photos'
    photos.mkdir()
    for f in sample().images.files[::12][:24]: shutil.copy(f, photos/f.name)
    args = ['run', str(photos), '--mllm', 'openai:fake-vlm', '--sample', str(SAMPLED), '--out', str(d/'job'),
            '--model', str(tiny_clip_config(d/'tiny.json')), '--random-init', '--epochs', '5', '--seed', '3']
    env = {**os.environ, 'OPENAI_API_KEY': 'sk-test'}
    slow = lambda fp, n: 'slow' if int(fp[:8], 16) % 3 == 0 else None   # some answers keep it busy: a kill lands mid-way
    with FakeChatServer(answer=answer, fault=slow, slow_seconds=2.0) as srv:
        cmd = [*args[:4], '--base-url', srv.url, *args[4:]]
        proc = subprocess.Popen([sys.executable, '-m', 'near_nb.cli', *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        kill_when(proc, d/'job'/'labels.sqlite', "SELECT COUNT(*) FROM answers WHERE status = 'done'", 4,
                  signal.SIGKILL, timeout=180)
        db = sqlite3.connect(d/'job'/'labels.sqlite')
        stored = db.execute("SELECT COUNT(*) FROM answers WHERE status = 'done'").fetchone()[0]
        db.close()
        os.environ['OPENAI_API_KEY'] = 'sk-test'
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed): rc = main([*cmd, '--json'])
        finally: del os.environ['OPENAI_API_KEY']
    return dict(dir=d, out=d/'job', srv=srv, stored=stored, rc=rc, second=json.loads(printed.getvalue()),
                stderr1=proc.stderr.read())

def test_killed_run_resumes_and_pays_once(job, capsys):
    srv = job['srv']
    assert job['rc'] == 0
    assert 4 <= job['stored'] < SAMPLED                    # the kill came while labelling
    assert job['second']['paid_calls'] == SAMPLED - job['stored']   # run 2 paid only for the answers not stored
    labels = read_table(job['out']/'labels.csv')
    assert len(labels) == SAMPLED and (labels.response.str.len() > 0).all()

def test_every_output_of_the_run_is_there(job):
    out = job['out']
    for f in ('labels.csv', 'embeddings.npz', 'refined_labels.csv', 'predictions.csv', 'near_map.html',
              'report.json', 'classifier/config.json'):
        assert (out/f).is_file(), f
    report = json.loads((out/'report.json').read_text())
    pv = report['provenance']
    assert pv['near_nb'] and pv['date'] and pv['mllm'] == 'fake-vlm' and 'random' in pv['backbone']
    assert report['random_init'] is True and 'random' in report['warning']   # said in the report too
    preds = read_table(out/'predictions.csv')
    assert len(preds) == 24 - SAMPLED and set(preds.name) <= set(NAMES)

def test_random_weights_are_said(job):
    assert 'random' in job['stderr1'].lower()

def test_map_of_the_run(job, capsys):
    out = job['out']
    rc = main(['map', str(out/'predictions.csv'), '--embeddings', str(out/'embeddings.npz'),
               '--out', str(job['dir']/'map.html'), '-q'])
    assert rc == 0, capsys.readouterr().err
    page = (job['dir']/'map.html').read_text(encoding='utf-8')
    assert 'plotly' in page.lower() and any(n in page for n in NAMES)
