"Labeling end to end: a real HTTP server with faults, a real `near label` subprocess killed half-way, the API key."
# `near label` runs in this process (`main`) except where the process is the subject: a kill, the
# environment it reads at start-up
import itertools, json, os, re, signal, subprocess, sys
import numpy as np, pandas as pd, pytest
from PIL import Image
from near_nb.testing import FakeChatServer, fingerprint, FAULTS, tiny_vlm
from near_nb.mllm import image_data_url, LabelStore
from near_nb.cli import main
from conftest import ROOT, kill_when

NEAR = [sys.executable, '-c', 'import sys; from near_nb.cli import main; sys.exit(main())']

def make_images(d, n, size=40, seed=0):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n): Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d/f'{i:03d}.png')
    return sorted(d.glob('*.png'))

def label_cmd(imgs, srv, tmp, *extra):
    return NEAR + ['label', str(imgs), '--mllm', 'openai:fake-vlm', '--base-url', srv.url, '--store', str(tmp/'s.sqlite'),
                   '--out', str(tmp/'labels.csv'), '--force', '-q', *extra]

def test_every_fault_recovered_nothing_paid_twice(tmp_path, capsys, monkeypatch):
    files = make_images(tmp_path/'imgs', 27)
    fps = [fingerprint(image_data_url(f, 768)) for f in files]
    # image k gets fault k % 9 on its first two attempts (400 only once: it is not retried, so it fails)
    plan = {fp: FAULTS[k % len(FAULTS)] for k, fp in enumerate(fps)}
    fault = lambda fp, n: plan[fp] if n <= 2 else None
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test')
    with FakeChatServer(fault=fault, slow_seconds=2.0, retry_after='0.3') as srv:
        code = main(label_cmd(tmp_path/'imgs', srv, tmp_path, '--timeout', '1', '--concurrency', '8')[len(NEAR):])
        out, err = capsys.readouterr()
        bad = [fps[k] for k in range(27) if plan[fps[k]] == '400']
        assert code == 1, out + err                                            # the 400s fail (not retried)
        assert 'not every image is labeled' in err and 'HTTP 400' in err
        df = pd.read_csv(tmp_path/'labels.csv')
        assert len(df) == 27 and (df.status == 'done').sum() == 24 and (df.status == 'failed').sum() == 3
        refusals = df[df.path.map(lambda p: plan[fingerprint(image_data_url(p, 768))] == 'refusal')]
        assert (refusals.names == '[]').all() and refusals.response.str.contains('sorry').all()
        for fp in fps:
            if plan[fp] in ('400', 'refusal'): continue
            assert srv.completed[fp] == 1, (plan[fp], srv.completed[fp])     # one normal answer each, never two
        assert all(srv.attempts[fp] == 1 for fp in bad)
        # 429 twice, then answered, each time after waiting at least Retry-After (0.3 s)
        t429 = [fp for fp in fps if plan[fp] == '429']
        assert all(srv.attempts[fp] == 3 for fp in t429)
        assert all(min(np.diff(srv.times[fp])) >= 0.3 for fp in t429)
        # the re-run asks only about the failed images; with the fault gone they succeed
        plan.update({fp: None for fp in bad})
        before = srv.requests
        code = main(label_cmd(tmp_path/'imgs', srv, tmp_path)[len(NEAR):])
        assert code == 0, capsys.readouterr().err
        assert srv.requests - before == 3
        assert (pd.read_csv(tmp_path/'labels.csv').status == 'done').all()

@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGINT])
def test_killed_labeling_run_resumes(tmp_path, sig, capsys, monkeypatch):
    "Kill `near label` half-way: at most the requests in flight are lost; the re-run completes without repeats."
    make_images(tmp_path/'imgs', 80)
    conc = 4
    # the server answers the first 30 requests and then holds every answer for a minute, so the run cannot finish
    # before the kill however loaded the machine is (slow answers alone let it finish twice); the re-run gets quick ones
    asked = itertools.count()
    hold = lambda fp, n: 'slow' if next(asked) >= 30 else None
    with FakeChatServer(latency=0.05, fault=hold, slow_seconds=60) as srv:
        p = subprocess.Popen(label_cmd(tmp_path/'imgs', srv, tmp_path, '--concurrency', str(conc)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, 'OPENAI_API_KEY': 'sk-test'})
        db = tmp_path/'s.sqlite'
        kill_when(p, db, "SELECT COUNT(*) FROM answers WHERE status='done'", 20, sig, timeout=60)
        stored = LabelStore(db).frame()
        kept = int((stored.status == 'done').sum())
        answered = sum(srv.completed.values())
        assert 20 <= kept < 80 and answered - kept <= conc, (kept, answered)    # lost: only what was in flight
        before, srv.fault = srv.requests, None
        monkeypatch.setenv('OPENAI_API_KEY', 'sk-test')
        rerun = label_cmd(tmp_path/'imgs', srv, tmp_path, '--concurrency', str(conc))[len(NEAR):]
        code = main(rerun)
        assert code == 0, capsys.readouterr().err
        assert srv.requests - before == 80 - kept                                # nothing stored is asked again
        assert len(LabelStore(db).frame()) == 80 and max(srv.completed.values()) <= 2
        assert sum(v == 2 for v in srv.completed.values()) <= conc

def test_api_key_never_written(tmp_path):
    key = 'sk-near-SECRET-4f9a8b7c6d5e'
    make_images(tmp_path/'imgs', 6)
    fault = lambda fp, n: '503' if n == 1 else None
    with FakeChatServer(fault=fault) as srv:
        r = subprocess.run(label_cmd(tmp_path/'imgs', srv, tmp_path), capture_output=True, text=True, timeout=120,
                           env={**os.environ, 'OPENAI_API_KEY': key, 'OPENAI_LOG': 'debug', 'PYTHONWARNINGS': 'always'})
        assert r.returncode == 0, r.stderr
        assert any({k.lower(): v for k, v in h.items()}.get('authorization') == f'Bearer {key}' for h in srv.headers_seen)   # the key was really used
    written = [f for f in tmp_path.rglob('*') if f.is_file()]
    assert {'s.sqlite', 'labels.csv'} <= {f.name for f in written}, written   # the store and the CSV were searched
    for f in written: assert key.encode() not in f.read_bytes(), f'the API key reached {f}'
    assert key not in r.stdout
    # the SDK's own debug log prints request options; the key must not be among them
    assert key not in r.stderr

# anything shaped like an API key: `sk-` and at least 12 more characters (a 15-character key), or a bearer token
KEY_SHAPE = re.compile(r'(\bsk-[A-Za-z0-9_-]{12,}|Bearer\s+(?!\*\*\*)\S{8,})')

def test_key_shape_catches_short_keys():
    "KEY_SHAPE finds a 15-character key and a short bearer token, and leaves a scrubbed header alone."
    key = 'sk-' + 'a1B2c3D4e5F6'
    assert len(key) == 15
    for text in [f'"api_key": "{key}"', 'Authorization: Bearer k1k2k3k4k5k6k7k']:
        assert KEY_SHAPE.search(text), text
    for text in ['Authorization: Bearer ***', 'risk-averse', 'sk-short']:
        assert not KEY_SHAPE.search(text), text

def test_notebooks_carry_no_secrets():
    "No committed notebook output holds anything shaped like an API key."
    for nb in list((ROOT/'nbs').rglob('*.ipynb')) + [ROOT/'index.ipynb']:
        for c in json.loads(nb.read_text())['cells']:
            out = json.dumps(c.get('outputs', []))
            assert not KEY_SHAPE.search(out), f'{nb.name}: output looks like a credential'

def test_label_hf_tiny_model_cli(tmp_path, capsys):
    "`near label --mllm hf:PATH` with a tiny random-weight Qwen2-VL built from a config, offline."
    make_images(tmp_path/'imgs', 3)
    vlm = tiny_vlm(tmp_path/'tiny-vlm')
    code = main(['label', str(tmp_path/'imgs'), '--mllm', f'hf:{vlm}', '--store', str(tmp_path/'s.sqlite'),
                 '--out', str(tmp_path/'labels.csv'), '--samples', '2', '-q'])
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path/'labels.csv')
    assert len(df) == 6 and (df.status == 'done').all() and df['sample'].tolist() == [0, 1] * 3
