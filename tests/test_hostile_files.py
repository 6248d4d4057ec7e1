"""Files you are handed are data, files you write are whole (issue #26).

A classifier folder is checked field by field before anything is built from it, and refused in one line that
names the file, the field and what was expected; `save_pretrained` killed by a signal half-way leaves the old
folder or the new one; images too thin to resize, folders of only bad images and broken embedding caches are
refused cheaply. Every table is written whole (a temporary file renamed) under a header that counts its rows, so a
cut file is refused by name, and its cells cannot run as spreadsheet formulas.
"""
import json, os, re, resource, signal, sqlite3, subprocess, sys
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from safetensors.torch import load_file, save_file
from near_nb.core import NearError
from near_nb.classifier import NearClassifier
from near_nb.data import ImageSet
from near_nb.embed import Backbone, EmbeddingCache, register_config
from near_nb.tables import read_table, sidecar_path, write_table
from near_nb.testing import tiny_clip_config

NEAR = [sys.executable, '-c', 'import sys; from near_nb.cli import main; sys.exit(main())']

def good_folder(tmp_path, name='clf'):
    "A saved three-name classifier (no backbone) and its config."
    W = np.eye(3, 32, dtype=np.float32)
    d = NearClassifier(['red', 'green', 'blue'], W, tau=0.05).save_pretrained(tmp_path/name)
    return d, json.loads((d/'config.json').read_text())

def tiny_spec(tmp_path, name):
    cfg = json.loads(tiny_clip_config(tmp_path/'tiny.json').read_text())
    return {'model_name': name, 'model_id': f'{name}/random-seed0', 'prep_id': 'pp-x',
            'open_clip_config': cfg, 'random_init': True, 'seed': 0}

def set_config(d, **fields):
    cfg = json.loads((d/'config.json').read_text())
    (d/'config.json').write_text(json.dumps({**cfg, **fields}))

def set_tensors(d, **tensors):
    t = load_file(d/'model.safetensors')
    save_file({**t, **tensors}, d/'model.safetensors')

def refusal(d, **kw):
    "The one-line message `from_pretrained` refuses `d` with."
    with pytest.raises(NearError) as e: NearClassifier.from_pretrained(d, **kw)
    msg = str(e.value)
    assert '\n' not in msg, msg
    return msg

def zero_link(d, name):
    (d/name).unlink()
    (d/name).symlink_to('/dev/zero')

def fifo(d, name):
    (d/name).unlink()
    os.mkfifo(d/name)

def oc_config(tmp, **changes):
    "A backbone spec with a plain name whose open_clip config has `changes`."
    spec = tiny_spec(tmp, 'ok-name')
    return {**spec, 'open_clip_config': {**spec['open_clip_config'], **changes}}

CASES = {  # name: (how to break a good folder, what the message must say)
    'nan weights': (lambda d, tmp: set_tensors(d, weights=torch.full((3, 32), float('nan'))),
                    "model.safetensors: weights is '96 non-finite values'; expected finite numbers"),
    'temperature 0': (lambda d, tmp: set_config(d, tau=0),
                      'config.json: tau is 0; expected a finite number > 0'),
    'temperature NaN': (lambda d, tmp: set_config(d, tau=float('nan')),
                        'config.json: tau is nan; expected a finite'),
    'temperature text': (lambda d, tmp: set_config(d, tau='0.05'),
                         "config.json: tau is '0.05'; expected a finite"),
    'no active name (config)': (lambda d, tmp: set_config(d, n_active=0),
                                'config.json: n_active is 0; expected at least one active name, at most 3'),
    'no active name (tensor)': (lambda d, tmp: set_tensors(d, active=torch.zeros(3, dtype=torch.bool)),
                                "model.safetensors: active is '0 active names'; "
                                "expected 3 (config.json n_active)"),
    'mismatched shapes': (lambda d, tmp: set_tensors(d, weights=torch.zeros(3, 16)),
                          'model.safetensors: weights.shape is (3, 16); expected (3, 32) (from config.json)'),
    'names mismatch weights': (lambda d, tmp: set_config(d, names=['red', 'green'], n_active=2),
                               'weights.shape is (3, 32); expected (2, 32)'),
    'duplicate names': (lambda d, tmp: set_config(d, names=['red', 'red', 'blue']),
                        "config.json: a name is 'red'; expected each name once"),
    'empty name': (lambda d, tmp: set_config(d, names=['red', ' ', 'blue']),
                   "a name is ' '; expected a non-empty"),
    'names not a list': (lambda d, tmp: set_config(d, names='red'),
                         "names is 'red'; expected a non-empty list"),
    'integer weights': (lambda d, tmp: set_tensors(d, weights=torch.zeros(3, 32, dtype=torch.int32)),
                        "weights.dtype is 'torch.int32'; expected a float dtype"),
    'format version text': (lambda d, tmp: set_config(d, format_version='4'),
                            "format_version is '4'; expected a whole"),
    'not an object': (lambda d, tmp: (d/'config.json').write_text('[1, 2]'),
                      'the whole file is [1, 2]; expected a JSON'),
    'deep JSON': (lambda d, tmp: (d/'config.json').write_text('[' * 100_000), 'not JSON'),
    'tuned tower missing': (lambda d, tmp: set_config(d, tuned_tower=True), 'expected a tuned tower present'),
    'FIFO config': (lambda d, tmp: fifo(d, 'config.json'),
                    'no readable config.json (is a FIFO (named pipe), not a regular file)'),
    'config link to /dev/zero': (lambda d, tmp: zero_link(d, 'config.json'),
                                 'no readable config.json (is a character device, not a regular file)'),
    'huge config': (lambda d, tmp: os.truncate(d/'config.json', 64 * 2**20),
                    'file too large: 67,108,864 bytes'),
    'weights link to /dev/zero': (lambda d, tmp: zero_link(d, 'model.safetensors'),
                                  'model.safetensors is not a readable safetensors file (is a character'),
    'weights FIFO': (lambda d, tmp: fifo(d, 'model.safetensors'),
                     'is not a readable safetensors file (is a FIFO'),
    '../ model name': (lambda d, tmp: set_config(d, backbone=tiny_spec(tmp, '../../escaped')),
                       "config.json: backbone.model_name is '../../escaped'; expected a plain name"),
    'absolute model name': (lambda d, tmp: set_config(d, backbone=tiny_spec(tmp, str(tmp/'abs'/'escaped'))),
                            'backbone.model_name is'),
    'huge image size': (lambda d, tmp: set_config(
                            d, backbone=oc_config(tmp, vision_cfg={'image_size': 10**6})),
                        'backbone.open_clip_config: vision_cfg.image_size is 1000000; expected a side'),
    'embed_dim disagrees': (lambda d, tmp: set_config(d, backbone=oc_config(tmp, embed_dim=64)),
                            'backbone.open_clip_config.embed_dim is 64; expected dim (32)'),
}

@pytest.mark.parametrize('case', CASES)
def test_broken_folders_are_refused_in_one_line(tmp_path, case):
    d, _ = good_folder(tmp_path)
    NearClassifier.from_pretrained(d)                                      # the good folder loads
    breaks, says = CASES[case]
    breaks(d, tmp_path)
    msg = refusal(d)
    assert says in msg and str(d) in msg, msg
    assert not list(tmp_path.rglob('escaped*')) and not os.path.exists('/escaped.json')  # nothing outside

def test_a_model_name_is_never_a_path(tmp_path, monkeypatch):
    "A good plain name is registered from a content-addressed file inside the home, whatever config it names."
    monkeypatch.setenv('NEAR_NB_HOME', str(tmp_path/'home'))
    d, _ = good_folder(tmp_path)
    spec = tiny_spec(tmp_path, 'plainname-hostiletest')
    set_config(d, backbone=spec)
    clf = NearClassifier.from_pretrained(d)
    assert clf.backbone.model_name == 'plainname-hostiletest' and clf.backbone.dim == 32
    written = [p.relative_to(tmp_path/'home') for p in (tmp_path/'home').rglob('*.json')]
    assert len(written) == 1 and written[0].parts[0] == 'model_configs'
    assert written[0].name == 'plainname-hostiletest.json'
    assert len(written[0].parts[1]) == 16                                  # the folder is the config's hash

def test_the_hub_path_runs_the_same_checks(tmp_path, monkeypatch):
    import huggingface_hub
    d, _ = good_folder(tmp_path)
    set_config(d, tau=-1)
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', lambda repo, **kw: str(d))
    msg = refusal('someone/hostile-classifier')
    assert 'config.json: tau is -1; expected a finite number > 0' in msg, msg

SAVE = '''
import sys, time, numpy as np
import near_nb.classifier as c
where = sys.argv[2]
def pause(): print('PAUSED', flush=True); time.sleep(120)
if where == 'after weights':
    orig = c.save_file
    c.save_file = lambda *a, **k: (orig(*a, **k), pause())
else:   # after config.json, before the model card
    orig_card = c.model_card
    c.model_card = lambda cfg, summary=None: (pause(), orig_card(cfg, summary))[1]
new = c.NearClassifier(['x', 'y', 'z', 'w'], np.full((4, 32), 0.5, np.float32), tau=0.1)
new.save_pretrained(sys.argv[1])
'''

def killed_save(d, where):
    "Start a save of a new four-name classifier into `d` and kill it with SIGKILL at `where`."
    p = subprocess.Popen([sys.executable, '-c', SAVE, str(d), where], stdout=subprocess.PIPE, text=True)
    try: assert p.stdout.readline().strip() == 'PAUSED'
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL

@pytest.mark.parametrize('where', ['after weights', 'after config'])
def test_a_killed_save_leaves_the_old_folder_or_the_new(tmp_path, where):
    d, _ = good_folder(tmp_path)
    killed_save(d, where)
    back = NearClassifier.from_pretrained(d)                               # the old one, whole
    assert back.names == ['red', 'green', 'blue'] and np.array_equal(back.weights, np.eye(3, 32))
    assert sorted(p.name for p in d.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    assert len(list(tmp_path.glob('.clf.*.partial'))) == 1                 # what the killed run left, hidden
    new = NearClassifier(['x', 'y', 'z', 'w'], np.full((4, 32), 0.5, np.float32), tau=0.1)
    new.save_pretrained(d)                                                 # a retry works, and tidies up
    assert NearClassifier.from_pretrained(d).names == ['x', 'y', 'z', 'w']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['clf']

def test_an_interrupted_first_save_can_be_redone(tmp_path):
    d = tmp_path/'first'
    killed_save(d, 'after weights')
    assert not d.exists()
    with pytest.raises(NearError, match='no such classifier folder'): NearClassifier.from_pretrained(d)
    NearClassifier(['a', 'b'], np.eye(2, 32)).save_pretrained(d)
    assert NearClassifier.from_pretrained(d).names == ['a', 'b']
    assert oct(d.stat().st_mode & 0o777) == oct(0o777 & ~_umask())         # as mkdir makes it, not 0o700

def _umask():
    m = os.umask(0o22)
    os.umask(m)
    return m

# ---- inputs bounded before work starts ----

@pytest.fixture
def tiny(tmp_path):
    return Backbone(str(tiny_clip_config(tmp_path/'tinyhf.json')), None, random_init=True, seed=1)

def thin_folder(tmp_path):
    d = tmp_path/'imgs'
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d/'good.png')
    Image.new('L', (1, 1_000_000)).save(d/'thin.png')                      # 1 megapixel, a few KB
    Image.new('RGB', (20_000, 2)).save(d/'wide.jpg')                       # a JPEG the GPU path would take
    return d

def test_extreme_aspect_ratios_are_refused_cheaply(tmp_path, tiny):
    d = thin_folder(tmp_path)
    errs = ImageSet.from_folder(d).check(progress=False)
    assert sorted((os.path.basename(e.path), e.reason.split(':')[0]) for e in errs) == \
        [('thin.png', 'extreme aspect ratio'), ('wide.jpg', 'extreme aspect ratio')]
    e = tiny.embed_images(ImageSet.from_folder(d), cache=False, num_workers=0, progress=False)
    assert e.valid.tolist() == [True, False, False] and e.emb.shape == (3, 32)
    clf = NearClassifier(['a', 'b'], np.eye(2, 32), backbone=tiny)
    assert [len(p) for p in clf.predict(sorted(d.iterdir()))] == [1, 0, 0]
    with pytest.raises(NearError, match='a PIL image of 1x1000000: extreme aspect ratio'):
        clf.embed(Image.open(d/'thin.png'))

PEAK = ('import resource, subprocess, sys\n'
        'r = subprocess.run(sys.argv[1:])\n'
        'print(f"PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)\n'
        'sys.exit(r.returncode)\n')

def near(*args, timeout=180):
    "Run `near ARGS` with its address space capped at 6 GB; (CompletedProcess, peak resident MB)."
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
    r = subprocess.run([sys.executable, '-c', PEAK, *NEAR, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, preexec_fn=cap)
    m = re.search(r'PEAK_RSS_KB=(\d+)\n', r.stderr)
    r.stderr = r.stderr.replace(m.group(0), '')
    return r, int(m.group(1)) / 1024

def test_near_check_and_embed_on_thin_and_only_bad_images(tmp_path):
    d = thin_folder(tmp_path)
    r, peak = near('check', d, '-q')
    assert r.returncode == 1 and 'extreme aspect ratio: 1x1000000 is more than 64:1' in r.stdout, r.stdout
    cfg = tiny_clip_config(tmp_path/'tinycli.json')
    r, peak = near('embed', d, '--model', cfg, '--random-init', '--out', tmp_path/'e.npz', '--cache',
                   tmp_path/'c.sqlite', '--workers', '0', '-q')
    assert r.returncode == 0 and '3 images: 0 from cache, 1 embedded, 2 skipped' in r.stdout, r.stderr
    for name in ('thin.png', 'wide.jpg'): assert f'{name}: extreme aspect ratio' in r.stdout, r.stdout
    assert peak < 1500, peak
    (d/'good.png').unlink()
    r, _ = near('embed', d, '--model', cfg, '--random-init', '--out', tmp_path/'e2.npz', '--cache',
                tmp_path/'c.sqlite', '--workers', '0', '-q')
    assert r.returncode == 1 and 'none of the 2 images could be embedded' in r.stderr, r.stderr
    said = [l for l in r.stderr.strip().splitlines() if 'has random weights' not in l]  # that warning comes first
    assert len(said) == 1 and not (tmp_path/'e2.npz').exists(), r.stderr

def test_a_folder_of_only_bad_files_is_an_error(tmp_path, tiny):
    d = tmp_path/'bad'
    d.mkdir()
    (d/'empty.jpg').write_bytes(b'')
    (d/'notes.png').write_text('not an image')
    with pytest.raises(NearError, match=r'none of the 2 images could be embedded \(.*empty.jpg: empty file'):
        tiny.embed_images(ImageSet.from_folder(d), cache=False, num_workers=0, progress=False)

def test_a_cached_vector_of_the_wrong_length_is_recomputed(tmp_path, tiny):
    d = thin_folder(tmp_path)
    (d/'thin.png').unlink()
    (d/'wide.jpg').unlink()
    Image.new('RGB', (30, 30), (200, 10, 10)).save(d/'red.png')
    iset = ImageSet.from_folder(d)
    cache = EmbeddingCache(tmp_path/'c.sqlite')
    first = tiny.embed_images(iset, cache=cache, num_workers=0, progress=False)
    short = np.ones(7, np.float32).tobytes()
    cache.con.execute('UPDATE emb SET vec=? WHERE sha256=?', (short, first.sha256[0]))
    cache.con.commit()
    fresh = Backbone(tiny.model_name, None, random_init=True, seed=1)
    again = fresh.embed_images(iset, cache=cache, num_workers=0, progress=False)
    assert (again.n_cached, again.n_computed) == (1, 1) and again.valid.all()
    np.testing.assert_allclose(again.emb, first.emb, atol=1e-6)
    assert len(cache.get(tiny.model_id, tiny.prep_id, [first.sha256[0]], dim=32)) == 1   # and rewritten

def test_broken_caches_say_what_to_do(tmp_path):
    junk = tmp_path/'junk.sqlite'
    junk.write_bytes(b'not a database ' * 200)
    other = sqlite3.connect(tmp_path/'other.sqlite')
    other.execute('CREATE TABLE emb (key TEXT, value BLOB)')
    other.commit()
    os.mkfifo(tmp_path/'pipe.sqlite')
    for f, says in [(junk, 'is not a SQLite file, or is corrupt'),
                    (tmp_path/'other.sqlite', 'unknown schema'),
                    (tmp_path/'pipe.sqlite', 'is a FIFO')]:
        with pytest.raises(NearError) as e: EmbeddingCache(f)
        msg = str(e.value)
        assert says in msg and str(f) in msg, msg
        assert msg.endswith('move it aside, or pass another cache (--cache)'), msg
    c = EmbeddingCache(tmp_path/'big.sqlite')                              # corrupt pages, found at read time
    hs = [f'{i:064x}' for i in range(3000)]
    c.put('m', 'p', hs, np.ones((3000, 64), np.float32))
    c.con.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    c.close()
    with open(tmp_path/'big.sqlite', 'r+b') as f:
        f.seek(8192)
        f.write(os.urandom(os.path.getsize(tmp_path/'big.sqlite') - 16384))
    with pytest.raises(NearError, match='is not a SQLite file, or is corrupt; move it aside'):
        EmbeddingCache(tmp_path/'big.sqlite').get('m', 'p', hs)

def test_model_config_files_are_data(tmp_path):
    os.mkfifo(tmp_path/'pipe.json')
    (tmp_path/'zero.json').symlink_to('/dev/zero')
    (tmp_path/'nan.json').write_text('{"embed_dim": 32, "vision_cfg": {"width": NaN}, "text_cfg": {}}')
    big = {'embed_dim': 32, 'vision_cfg': {'image_size': 100_000}, 'text_cfg': {}}
    (tmp_path/'big.json').write_text(json.dumps(big))
    for name, says in [('pipe.json', 'is a FIFO'), ('zero.json', 'is a character device'),
                       ('nan.json', 'vision_cfg.width is nan'),
                       ('big.json', 'vision_cfg.image_size is 100000')]:
        with pytest.raises(NearError, match=re.escape(says)): register_config(tmp_path/name)

# ---- tables written whole, cut tables refused, cells that are not formulas ----

WRITE = '''
import sys, time, pandas as pd
from near_nb.tables import write_table
orig = pd.DataFrame.to_csv
def paused(self, f, **k):
    orig(self, f, **k)
    f.flush()
    print('PAUSED', flush=True)
    time.sleep(120)
pd.DataFrame.to_csv = paused
write_table(pd.DataFrame({'path': [f'{i}.jpg' for i in range(200)], 'name': ['new'] * 200}), sys.argv[1])
'''

def predictions(n=200, name='rose'):
    return pd.DataFrame({'path': [f'/images/{i:03d}.jpg' for i in range(n)], 'sha256': ['0' * 64] * n,
                         'name': [name] * n, 'score': np.linspace(0.1, 0.9, n).round(3), 'source': 'classifier'})

def test_a_killed_table_write_leaves_the_old_file(tmp_path):
    "SIGKILL after every row is written but before the rename: the old table stays whole; a retry tidies up."
    f = tmp_path/'predictions.csv'
    write_table(predictions(3), f)
    p = subprocess.Popen([sys.executable, '-c', WRITE, str(f)], stdout=subprocess.PIPE, text=True)
    try: assert p.stdout.readline().strip() == 'PAUSED'
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert read_table(f).path.tolist() == predictions(3).path.tolist()       # the old one, whole
    assert len(list(tmp_path.glob('.predictions.csv.*.partial'))) == 1       # what the killed run left, hidden
    write_table(predictions(5), f)
    assert len(read_table(f)) == 5
    assert sorted(q.name for q in tmp_path.iterdir()) == ['predictions.csv', 'predictions.csv-metadata.json']

def test_a_cut_table_is_refused_by_name(tmp_path, capsys):
    """A predictions file cut after 72 of its 200 rows (a copy that stopped; its record beside it): `near export`
    refuses it, exit 1, in one line naming the file, the rows found and promised, and --force; a CSV written by hand
    still exports."""
    from near_nb.cli import main
    f = write_table(predictions(), tmp_path/'predictions.csv')
    lines = f.read_text().splitlines(keepends=True)
    cut = tmp_path/'cut.csv'
    cut.write_text(''.join(lines[:1 + 72]))
    sidecar_path(cut).write_bytes(sidecar_path(f).read_bytes())   # the record was copied whole
    assert main(['export', str(cut), '--to', 'csv', '--out', str(tmp_path/'out.csv')]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f'{cut} is cut short: 72 of the 200 rows' in err and '--force' in err, err
    assert not (tmp_path/'out.csv').exists()
    predictions(4).to_csv(tmp_path/'by_hand.csv', index=False)
    assert main(['export', str(tmp_path/'by_hand.csv'), '--to', 'csv', '--out', str(tmp_path/'out.csv')]) == 0
    assert len(read_table(tmp_path/'out.csv')) == 4

def test_names_that_look_like_formulas(tmp_path, capsys):
    """A name starting with = + - @ is escaped in every CSV the writer makes, `near export --to csv` included, and
    comes back as it was."""
    from near_nb.cli import main
    evil = ['=HYPERLINK("http://x","y")', '+1', '-rose', '@sum', '\tcell']
    df = predictions(5).assign(name=evil)
    f = write_table(df, tmp_path/'predictions.csv')
    assert main(['export', str(f), '--to', 'csv', '--out', str(tmp_path/'out.csv')]) == 0
    for out in (f, tmp_path/'out.csv'):
        cells = pd.read_csv(out, keep_default_na=False).name.tolist()                 # a plain CSV
        assert all(c.startswith("'") for c in cells), cells                    # no cell a spreadsheet would run
        assert read_table(out).name.tolist() == evil

def test_a_file_name_cannot_forge_a_summary_line(tmp_path, capsys):
    """A file named with a newline and a fake count, and one with a terminal escape: `near check` prints each on
    one line, escaped, and the last line is the real count."""
    from near_nb.cli import main
    d = tmp_path/'imgs'
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d/'good.png')
    (d/'bad.jpg\n9 images: 9 usable, 0 unusable; 0 other files ignored').write_bytes(b'')
    (d/'\x1b[2Kevil.jpg').write_bytes(b'')
    assert main(['check', str(d), '-q']) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith('2 images: 1 usable, 1 unusable') and len(out) == 3, out
    assert any('bad.jpg\\n9 images' in l for l in out) and any('\\x1b[2Kevil.jpg' in l for l in out), out
    assert not any('\x1b' in l for l in out)
