"""Hostile files and unlucky faults: nothing hangs, nothing runs out of memory, nothing is paid twice, no key leaks.

Where memory or a hang is the subject, the `near` command runs in a subprocess with a timeout, inside a tiny wrapper
that reports the command's peak resident memory (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`), so a file read whole
or a conversion that blows up shows as a number over the cap, and a FIFO or `/dev/zero` shows as a timeout. Elsewhere
`near_nb.cli.main` runs in this process (a process costs seconds of imports).
"""
import json, os, re, signal, socket, sqlite3, subprocess, sys, time
import numpy as np, pandas as pd, pytest
from PIL import Image
from near_nb.testing import tiny_clip_config, FakeChatServer, png_header_only
from near_nb.mllm import LabelStore
from near_nb.cli import main

NEAR = [sys.executable, '-c', 'import sys; from near_nb.cli import main; sys.exit(main())']
PEAK = ('import resource, subprocess, sys\n'
        'r = subprocess.run(sys.argv[1:])\n'
        'print(f"PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)\n'
        'sys.exit(r.returncode)\n')
MEMORY_CAP_MB = 1500  # torch and a tiny CLIP take about 500 MB; the 2 GB file read whole would take 2,000 more

def near(*args, timeout=120, env=None):
    "Run `near ARGS`; return (CompletedProcess, peak resident MB); fail the test if it runs past `timeout`."
    p = subprocess.Popen([sys.executable, '-c', PEAK, *NEAR, *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, errors='backslashreplace', start_new_session=True,
                         env={**os.environ, **(env or {})})
    try: out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f'near {args[0]} hung: still running after {timeout}s')
    m = re.search(r'PEAK_RSS_KB=(\d+)\n', err)
    return subprocess.CompletedProcess(args, p.returncode, out, err.replace(m.group(0), '')), int(m.group(1)) / 1024

GOOD = ['good0.png', 'good1.png', 'sub/good2.jpg', 'deep16.png', 'float.tif', b'caf\xe9.png']
BAD = {'pipe.jpg': 'FIFO', 'zero.jpg': 'character device', 'huge.jpg': 'file too large', 'bomb.png': 'image too large',
       'truncated.jpg': 'truncated', 'empty.jpg': 'empty file', 'sock.jpg': 'socket', 'gone.jpg': 'broken symlink'}

@pytest.fixture
def hostile(tmp_path):
    "A folder holding every kind of bad entry above, and six good images (one with a name that is not UTF-8)."
    d = tmp_path/'hostile'
    (d/'sub').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(GOOD[:3]): Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d/name)
    ramp = (np.arange(3000 * 3000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(3000, 3000)
    Image.fromarray(ramp).save(d/'deep16.png')                                  # 9 Mpx, 16-bit
    Image.fromarray(rng.random((30, 40)).astype(np.float32)).save(d/'float.tif')
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(os.path.join(os.fsencode(d), GOOD[5]), 'PNG')
    (d/'sub'/'loop').symlink_to('..')                                           # a link back up the tree
    os.mkfifo(d/'pipe.jpg')
    (d/'zero.jpg').symlink_to('/dev/zero')
    with open(d/'huge.jpg', 'wb') as f: f.truncate(2 * 2**30)                 # 2 GB, sparse
    (d/'bomb.png').write_bytes(png_header_only(30_000, 30_000))
    (d/'truncated.jpg').write_bytes((d/'sub'/'good2.jpg').read_bytes()[:300])
    (d/'empty.jpg').write_bytes(b'')
    (d/'gone.jpg').symlink_to(d/'nowhere.jpg')
    (d/'notes.txt').write_text('not an image')
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d/'sock.jpg'))
    yield d
    s.close()

def assert_reported(text, extra=()):
    for name, why in [*BAD.items(), *extra]:
        line = next((l for l in text.splitlines() if re.search(f'/{re.escape(name)}(: | \\(sample)', l)), None)
        assert line is not None and why in line, (name, why, line)

def test_check_reports_every_bad_entry(hostile):
    r, peak = near('check', hostile, '-q')
    assert r.returncode == 1, r.stderr
    assert_reported(r.stdout, [('loop', 'already walked'), ('notes.txt', 'not an image extension')])
    assert '14 images: 6 usable, 8 unusable; 2 other files ignored' in r.stdout, r.stdout
    assert 'caf\\xe9.png' not in r.stdout and 'Traceback' not in r.stderr
    assert peak < MEMORY_CAP_MB, peak

def test_embed_skips_bad_entries_and_embeds_the_rest(hostile, tmp_path):
    cfg = tiny_clip_config(tmp_path/'tinyhostile.json')
    out = tmp_path/'e.npz'
    r, peak = near('embed', hostile, '--model', cfg, '--random-init', '--out', out, '--cache', tmp_path/'c.sqlite',
                   '--workers', '0', '-q', timeout=240)
    assert r.returncode == 0, r.stderr
    assert '14 images: 0 from cache, 6 embedded, 8 skipped' in r.stdout, r.stdout
    assert_reported(r.stdout)
    z = np.load(out)
    assert z['valid'].sum() == 6 and 'caf\\xe9.png' in ' '.join(z['path'])
    assert peak < MEMORY_CAP_MB, peak

def label(images, srv, tmp, *extra, store='s.sqlite', out='labels.csv', key='sk-test', timeout=120):
    return near('label', images, '--mllm', 'openai:fake-vlm', '--base-url', srv.url, '--store', tmp/store,
                '--out', tmp/out, '-q', *extra, timeout=timeout, env={'OPENAI_API_KEY': key})

def here(capsys, *args):
    "`near ARGS` in this process: a CompletedProcess (exit status, stdout, stderr), as `near` gives."
    try: rc = main([str(a) for a in args])
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)

@pytest.fixture
def label_here(capsys, monkeypatch):
    "`near label` in this process against a fake server, the key in the environment as a user would set it."
    def run(images, srv, tmp, *extra, store='s.sqlite', out='labels.csv', key='sk-test'):
        monkeypatch.setenv('OPENAI_API_KEY', key)
        return here(capsys, 'label', images, '--mllm', 'openai:fake-vlm', '--base-url', srv.url, '--store', tmp/store,
                    '--out', tmp/out, '-q', *extra)
    return run

def test_label_pays_for_good_images_once(hostile, tmp_path):
    with FakeChatServer() as srv:
        r, peak = label(hostile, srv, tmp_path)
        assert r.returncode == 1 and 'not every image is labeled' in r.stderr, r.stderr
        assert_reported(r.stderr)
        assert srv.requests == 6 and set(srv.completed.values()) == {1}
        r2, _ = label(hostile, srv, tmp_path, '--force')                    # the re-run asks nothing again
        assert srv.requests == 6 and '0 answered, 6 already in the store' in r2.stdout, r2.stdout
    df = pd.read_csv(tmp_path/'labels.csv')
    assert len(df) == 14 and (df.status == 'done').sum() == 6 and (df.status != 'done').sum() == 8
    raw = sqlite3.connect(tmp_path/'s.sqlite').execute("SELECT path FROM answers WHERE typeof(path)='blob'").fetchall()
    assert [bytes(p).endswith(b'/caf\xe9.png') for (p,) in raw] == [True]     # the name, byte for byte
    assert peak < MEMORY_CAP_MB, peak

def test_manifests(hostile, tmp_path, capsys):
    for text, says in [(b'', 'is empty'), (b'file\n', 'no rows'), (b'file,gt_name\ngood0.png,a\ngood1.png\n', 'line 3'),
                       (b'\x89PNG\r\n\x1a\n\x00\x00\xff\xfe', 'line 1: not UTF-8')]:
        (hostile/'m.csv').write_bytes(text)
        r = here(capsys, 'check', hostile/'m.csv', '-q')
        assert r.returncode == 1 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (text, r.stderr)
        assert 'Traceback' not in r.stderr
    r = here(capsys, 'check', hostile/'m.csv', '-q', '-v')
    assert r.returncode == 1 and 'Traceback' in r.stderr                       # -v shows where it came from
    (hostile/'sub'/'m.csv').write_text('file\ngood2.jpg\n../good0.png\n/etc/hostname\n')
    r = here(capsys, 'check', hostile/'sub'/'m.csv', '-q')
    assert r.returncode == 0 and '1 images: 1 usable' in r.stdout, r.stdout
    assert 'good0.png: line 3: outside' in r.stdout and 'hostname: line 4: outside' in r.stdout
    r = here(capsys, 'check', hostile/'sub'/'m.csv', '-q', '--allow-outside')
    assert r.returncode == 1 and '3 images: 2 usable, 1 unusable' in r.stdout, r.stdout

def test_two_labelers_on_one_store_pay_once(tmp_path):
    "Two `near label` runs started together on one store: each image is asked once, both runs end with every label."
    rng = np.random.default_rng(3)
    (tmp_path/'imgs').mkdir()
    for i in range(40): Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path/'imgs'/f'{i:02d}.png')
    with FakeChatServer(latency=1.0) as srv:                                     # 40 images, 4 at a time: 10 s each alone
        cmd = lambda out: NEAR + ['label', str(tmp_path/'imgs'), '--mllm', 'openai:fake-vlm', '--base-url', srv.url,
                                  '--store', str(tmp_path/'s.sqlite'), '--out', str(tmp_path/out), '--concurrency', '4', '-q']
        env = {**os.environ, 'OPENAI_API_KEY': 'sk-test'}
        runs = [subprocess.Popen(cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for out in ('a.csv', 'b.csv')]
        outs = [p.communicate(timeout=180) for p in runs]
        assert [p.returncode for p in runs] == [0, 0], outs
        assert srv.requests == 40 and set(srv.completed.values()) == {1}, srv.requests   # 40 images, 40 requests
    answered = [int(re.search(r'(\d+) answered,', o).group(1)) for o, _ in outs]
    assert sum(answered) == 40 and min(answered) > 0, outs                       # both runs really worked
    for out in ('a.csv', 'b.csv'): assert (pd.read_csv(tmp_path/out).status == 'done').sum() == 40
    print([o for o, _ in outs])

@pytest.mark.parametrize('key', ['k' * 15, 'sk-' + 'Zq9' * 20 + 'x'])
def test_key_echoed_by_the_server_is_scrubbed(tmp_path, key, label_here):
    (tmp_path/'imgs').mkdir()
    Image.new('RGB', (20, 20), 'red').save(tmp_path/'imgs'/'a.png')
    with FakeChatServer(fault=lambda fp, n: 'echo') as srv:
        r = label_here(tmp_path/'imgs', srv, tmp_path, '--max-attempts', '2', key=key)
    assert r.returncode == 1 and 'HTTP 500' in r.stderr and '***' in r.stderr
    assert any(f'Bearer {key}' in str(h) for h in srv.headers_seen)             # the server really echoed it
    written = [f for f in tmp_path.rglob('*') if f.is_file()]
    assert 's.sqlite' in {f.name for f in written}, written                      # the store was searched
    for f in written: assert key.encode() not in f.read_bytes(), f
    assert key not in r.stdout + r.stderr

def test_formulas_escaped_and_huge_answers_cut(tmp_path, label_here):
    (tmp_path/'imgs').mkdir()
    for i, c in enumerate(['red', 'blue']): Image.new('RGB', (20, 20), c).save(tmp_path/'imgs'/f'{i}.png')
    order = []
    def fault(fp, n):
        if fp not in order: order.append(fp)
        return 'huge' if order.index(fp) == 1 else None
    with FakeChatServer(fault=fault, answer=lambda fp: '=HYPERLINK("http://x.example","Rose")', huge_chars=100_000) as srv:
        r = label_here(tmp_path/'imgs', srv, tmp_path, '--concurrency', '1')
    assert r.returncode == 0, r.stderr
    assert '1 answers truncated' in r.stdout, r.stdout
    text = (tmp_path/'labels.csv').read_text()
    assert '"\'=HYPERLINK(' in text and '"=HYPERLINK' not in text
    got = LabelStore(tmp_path/'s.sqlite').frame().response.str.len().sort_values().tolist()
    assert got[1] < 33_000 and got[1] > 32_768, got

def test_network_faults(tmp_path, label_here, capsys, monkeypatch, caplog):
    (tmp_path/'imgs').mkdir()
    for i in range(12): Image.new('RGB', (20, 20), (i * 20, 0, 0)).save(tmp_path/'imgs'/f'{i}.png')
    with FakeChatServer(fault=lambda fp, n: '429' if n == 1 else None, retry_after='3600') as srv:
        t0 = time.time()
        r = label_here(tmp_path/'imgs', srv, tmp_path, '--max-retry-after', '0.5')
        assert r.returncode == 0 and time.time() - t0 < 60, r.stderr
        logged = r.stderr + caplog.text                          # in-process, pytest's handler takes the log line
        assert 'asked to wait 3600s (Retry-After); waiting 0.5s' in logged, logged
        closed = srv.url
    t0 = time.time()
    r = label_here(tmp_path/'imgs', srv, tmp_path, store='refused.sqlite', out='refused.csv')
    assert r.returncode == 1 and time.time() - t0 < 30
    assert f'connection refused at {closed}' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    monkeypatch.setenv('OPENAI_API_KEY', '')
    r = here(capsys, 'label', tmp_path/'imgs', '--mllm', 'openai:gpt-4o', '--base-url', 'https://api.example.com/v1',
             '--store', tmp_path/'k.sqlite', '--out', tmp_path/'k.csv')
    assert r.returncode == 1 and 'no API key' in r.stderr, r.stderr

def test_numbers_checked_when_parsing(capsys):
    "Zero, negative, non-finite, unbounded or non-numeric settings are usage errors (exit 2, one line) before anything runs."
    label = ['label', 'imgs', '--mllm', 'openai:m', '--store', 's.sqlite', '--out', 'o.csv']
    fit = ['fit', 'labels.csv', '--out', 'c']
    predict = ['predict', 'imgs', '--classifier', 'c', '--out', 'p.csv']
    bench = ['bench', 'testbed', 'd']
    cases = [(label, bad) for bad in (
                 ['--concurrency', '0'], ['--max-side', '0'], ['--top-k', '0'], ['--names-asked', '0'], ['--samples', '-1'],
                 ['--timeout', 'x'], ['--max-attempts', '0'], ['--max-retry-after', '-1'], ['--timeout', 'nan'],
                 ['--timeout', 'inf'], ['--timeout', '-1'], ['--temperature', 'nan'], ['--temperature', 'inf'],
                 ['--temperature', '-0.5'], ['--max-retry-after', 'nan'], ['--max-retry-after', 'inf'])]
    cases += [(['embed', 'imgs', '--out', 'e.npz'], bad) for bad in (['--batch-size', '0'], ['--workers', '-1'])]
    cases += [(fit, bad) for bad in (['--epochs', '1000000000'], ['--epochs', '-1'], ['--similar', 'nan'],
                                     ['--similar', '-1'], ['--similar', '5'], ['--n-top', '-1'], ['--n-top', '0'],
                                     ['--n-top', '1000'], ['--lr', 'nan'], ['--k', '100000'], ['--warmup', '1e9'])]
    cases += [(predict, bad) for bad in (['--top-k', '0'], ['--names-kept', '0'], ['--budget', 'nan'],
                                         ['--threshold', 'inf'], ['--candidates', '0'])]
    cases += [(bench, bad) for bad in (['--seeds', '0'], ['--similar', 'nan'], ['--support', '2'], ['--epochs', '-3'])]
    for base, bad in cases:
        with pytest.raises(SystemExit) as e: main(base + bad)
        err = capsys.readouterr().err
        assert e.value.code == 2 and bad[0] in err and err.strip().splitlines()[-1].startswith('near '), (bad, err)
    for base, good in [(label, ['--timeout', '0.5', '--temperature', '0', '--max-retry-after', '0']),
                       (fit, ['--epochs', '10000', '--similar', '0', '--n-top', '12']), (predict, ['--names-kept', '1'])]:
        parsed = main.__globals__['parser']().parse_args(base + good)
        assert parsed.cmd == base[0], good

def test_unusable_store_or_output_fails_before_paying(tmp_path, label_here):
    (tmp_path/'imgs').mkdir()
    Image.new('RGB', (20, 20)).save(tmp_path/'imgs'/'a.png')
    (tmp_path/'junk.sqlite').write_bytes(b'not sqlite' * 200)
    (tmp_path/'adir').mkdir()
    cases = [({'store': 'adir'}, 'is a folder'), ({'store': 'junk.sqlite'}, 'not a SQLite file'),
             ({'store': '/proc/near/s.sqlite'}, 'cannot create the label store'),
             ({'out': 'adir'}, 'is a folder'), ({'out': '/proc/near.csv'}, 'cannot be written')]
    with FakeChatServer() as srv:
        for kw, says in cases:
            r = label_here(tmp_path/'imgs', srv, tmp_path, **kw)
            assert r.returncode == 1 and says in r.stderr and 'Traceback' not in r.stderr, (kw, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert srv.requests == 0                                                  # nothing was paid for
