"End-to-end embedding behaviour that a notebook cannot show: real subprocesses, SIGKILL, the CLI (offline errors: test_offline.py)."
import json
from types import SimpleNamespace
import pandas as pd, pytest
import os, signal, subprocess, sys
import numpy as np, torch
from PIL import Image
from near_nb.data import ImageSet
from near_nb.embed import Backbone, EmbeddingCache
from near_nb.formats import read_table
from near_nb.testing import tiny_clip_config
from conftest import kill_when

@pytest.fixture
def near(capsys, monkeypatch):
    "The `near` command in this process (`cli.main`): what a subprocess would give, without its seconds of imports."
    from near_nb.cli import main
    def run(*args, env=None):
        for k, v in (env or {}).items(): monkeypatch.setenv(k, v)
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)
    return run

# test_offline_pretrained_tag_gives_clear_error moved to tests/test_offline.py (in-process)

def test_local_checkpoint_file(tmp_path, photos):
    cfg = tiny_clip_config(tmp_path/'tinyck.json')
    rnd = Backbone(str(cfg), None, random_init=True, seed=5).load()
    ck = tmp_path/'tiny.pt'
    torch.save(rnd.model.state_dict(), ck)
    fromfile = Backbone(str(cfg), pretrained=str(ck))
    assert fromfile.model_id.startswith('tinyck-') and '/file-' in fromfile.model_id and not fromfile.loaded
    a = rnd.embed_images(ImageSet.from_folder(photos), cache=False, progress=False, num_workers=0)
    b = fromfile.embed_images(ImageSet.from_folder(photos), cache=False, progress=False, num_workers=0)
    np.testing.assert_allclose(a.emb, b.emb, atol=1e-5)
    other = Backbone(str(cfg), None, random_init=True, seed=6).embed_images(ImageSet.from_folder(photos), cache=False, progress=False, num_workers=0)
    assert np.abs(other.emb - a.emb).max() > 1e-3  # the checkpoint's weights were really used

KILL_SCRIPT = '''
import sys, time
from near_nb.embed import Backbone
from near_nb.data import ImageSet
bb = Backbone(sys.argv[1], None, random_init=True)
orig = bb.encode_batch
def slow(x):
    time.sleep(0.15); return orig(x)
bb.encode_batch = slow
bb.embed_images(ImageSet.from_folder(sys.argv[2]), cache=sys.argv[3], batch_size=4, num_workers=1, progress=False)
print('finished')
'''

def test_killed_embedding_run_resumes(tmp_path):
    "SIGKILL half-way: every finished batch is in the cache, the re-run embeds only the rest, results identical."
    rng = np.random.default_rng(1)
    d = tmp_path/'imgs'
    d.mkdir()
    for i in range(80): Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d/f'{i:03d}.png')
    cfg, db = tiny_clip_config(tmp_path/'tinykill.json'), tmp_path/'cache.sqlite'
    p = subprocess.Popen([sys.executable, '-c', KILL_SCRIPT, str(cfg), str(d), str(db)], stdout=subprocess.PIPE, text=True)
    kill_when(p, db, 'SELECT COUNT(*) FROM emb', 12, signal.SIGKILL)
    kept = EmbeddingCache(db).count(Backbone(str(cfg), None, random_init=True).model_id)
    assert 12 <= kept < 80 and kept % 4 == 0, kept  # whole batches only
    bb = Backbone(str(cfg), None, random_init=True)
    e = bb.embed_images(ImageSet.from_folder(d), cache=db, batch_size=4, num_workers=0, progress=False)
    assert (e.n_cached, e.n_computed, len(e.errors)) == (kept, 80 - kept, 0)
    ref = bb.embed_images(ImageSet.from_folder(d), cache=False, num_workers=0, progress=False)
    np.testing.assert_allclose(e.emb, ref.emb, atol=1e-5)

def test_cli_embed_reports_and_skips_bad_files(tmp_path, photos, near):
    (photos/'broken.jpg').write_bytes((photos/'00.jpg').read_bytes()[:300])
    (photos/'empty.png').write_bytes(b'')
    (photos/'notes.txt').write_text('hello')
    cfg, out = tiny_clip_config(tmp_path/'tinycli.json'), tmp_path/'e.npz'
    r = near('embed', str(photos), '--model', str(cfg), '--random-init', '--out', str(out), '--cache', str(tmp_path/'c.sqlite'), '-q')
    assert r.returncode == 0, r.stderr
    assert '14 images: 0 from cache, 12 embedded, 2 skipped' in r.stdout
    assert 'broken.jpg: truncated' in r.stdout and 'empty.png: empty file' in r.stdout
    z = np.load(out)
    assert z['emb'].shape == (14, 32) and z['valid'].sum() == 12
    again = ('embed', str(photos), '--model', str(cfg), '--random-init', '--out', str(out), '--cache', str(tmp_path/'c.sqlite'), '-q')
    r2 = near(*again)
    assert r2.returncode == 1 and 'already exists: pass --force' in r2.stderr   # an output is replaced only when asked
    r2 = near(*again, '--force')
    assert '12 from cache, 0 embedded, 2 skipped' in r2.stdout
    c = near('check', str(photos), '-q')
    assert c.returncode == 1 and 'notes.txt' in c.stdout and '12 usable, 2 unusable' in c.stdout

def test_cli_demo_offline(tmp_path, near):
    r = near('demo', '--out', str(tmp_path/'demo'), '-q', env={'NEAR_NB_HOME': str(tmp_path/'home')})
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path/'demo'/'report.json').read_text())
    assert rep['images'] == 306 and rep['unusable_images'] == 0 and rep['labeled'] == 306
    assert rep['embedding'] == '306 images: 306 from cache, 0 embedded, 0 skipped'
    assert 60 < rep['loo_1nn_accuracy'] < 95
    t = rep['table']
    raw, near_ = t['MLLM top-1 (first name, lower-cased)'], t['NeaR refined']
    assert near_['cacc'] > raw['cacc'] + 5 and near_['sacc'] > raw['sacc'] and near_['names'] < raw['names']
    assert 'NeaR refined' in r.stdout and 'sACC with all-MiniLM-L6-v2' in r.stdout and 'near_map.html' in r.stdout
    html = (tmp_path/'demo'/'near_map.html').read_text()
    assert 'plotly' in html and 'NeaR name' in html
    refined = read_table(tmp_path/'demo'/'refined_labels.csv')   # the plain CSV, its record beside it
    assert len(refined) == 306 and set(refined.columns) >= {'path', 'mllm', 'near', 'clean'}
    # the saved classifier names the sample's embeddings without any MLLM, as the refined labels say
    from near_nb.classifier import NearClassifier
    from near_nb.data import sample
    from near_nb.pipeline import seed_sample_cache
    clf = NearClassifier.from_pretrained(tmp_path/'demo'/'classifier')
    pred = [p[0][0] for p in clf.predict(sample().emb)]
    assert np.mean(np.array(pred) == refined.near.to_numpy()) > 0.9
    # and names image files through the backbone its config names (here served from the cache the sample seeds)
    s = seed_sample_cache(sample())
    assert [p[0][0] for p in clf.predict(s.images.files[:5])] == pred[:5]
    again = near('demo', '--out', str(tmp_path/'demo'), '-q', env={'NEAR_NB_HOME': str(tmp_path/'home')})
    assert again.returncode == 0 and json.loads((tmp_path/'demo'/'report.json').read_text())['table'] == t   # reproducible
