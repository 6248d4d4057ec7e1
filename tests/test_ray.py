"""Embedding, prediction and labeling on a local Ray cluster (issue 15): the Parquet output equals the in-process
result, a batch that fails is retried and reported, and a job that dies keeps what it wrote."""
import gc
import json
import os
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from PIL import Image

ray = pytest.importorskip('ray', reason="Ray is an optional extra: pip install 'near_nb[ray]'")
from near_nb.classifier import NearClassifier, backbone_spec
from near_nb.core import NearError
from near_nb.distributed import EmbedBatches, LabelBatches, PredictBatches, connect, read_results, run_batches
from near_nb.embed import Backbone
from near_nb.testing import register_tiny_clip, tiny_clip_config
from near_nb.cli import main
from near_nb.testing import FakeChatServer
from near_nb.mllm import LabelStore, OpenAILabeler, export_labels, label_images

N = 120  # 3 full batches of 40 and a last one (the truncated file): the count is not what is tested


@pytest.fixture(scope='module')
def cluster():
    try: connect(num_cpus=2)
    except Exception:  # Ray gives its raylet 30 s to register, which a loaded 2-core machine can miss: once more
        ray.shutdown()
        connect(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def collect_garbage():
    "After each test, free what cycles hold (a failed job's traceback pins its actors, and their CPUs, until then)."
    yield
    gc.collect()


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    "N small JPEGs with structure (gradients + noise) and one truncated file."
    d = tmp_path_factory.mktemp('ray_images')
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48]
    for i in range(N):
        base = np.stack([xx * (i % 5), yy * (i % 7), (xx + yy) * (i % 3)], -1) + rng.integers(0, 60, (40, 48, 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(d/f'{i:03d}.jpg', quality=90)
    good = (d/'000.jpg').read_bytes()
    (d/'zz_truncated.jpg').write_bytes(good[:len(good) // 3])
    return sorted(d.iterdir())


@pytest.fixture(scope='module')
def tiny():
    return Backbone(register_tiny_clip('near-tiny-ray'), None, random_init=True)


def embedding_matrix(df): return np.stack(df.embedding.to_numpy()).astype(np.float32)


def test_embed_on_ray_equals_in_process_and_a_failed_batch_is_retried(cluster, images, tiny, tmp_path):
    marker = tmp_path/'failed-once'

    class FlakyEmbed(EmbedBatches):  # defined here: Ray ships it to the workers by value
        def embed(self, batch):
            if str(images[N // 2]) in batch.column('path').to_pylist():
                try: os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # the first attempt only
                except FileExistsError: pass
                else: raise OSError('simulated I/O error on a worker')
            return super().embed(batch)

    out = tmp_path/'emb.parquet'
    r = run_batches(FlakyEmbed, {'spec': backbone_spec(tiny)}, images, out, batch_size=40)
    assert r['written'] == N + 1 and r['already_done'] == 0
    assert len(r['failures']) == 1 and 'simulated I/O error' in r['failures'][0], r['failures']
    df = read_results(out)
    ref = tiny.embed_images(images, cache=False, progress=False, num_workers=0)
    assert df.path.tolist() == [str(p) for p in images] and df['index'].tolist() == list(range(N + 1))
    assert df.sha256.tolist() == [h or '' for h in ref.sha256]
    np.testing.assert_allclose(embedding_matrix(df)[:N], ref.emb[:N], atol=1e-5)
    assert np.isnan(embedding_matrix(df)[N]).all() and 'truncated' in df.error.iloc[N]
    again = run_batches(EmbedBatches, {'spec': backbone_spec(tiny)}, images, out, batch_size=40)
    assert (again['already_done'], again['written']) == (N + 1, 0)  # a re-run does nothing twice


def test_a_dead_job_keeps_what_it_wrote_and_the_rerun_finishes(cluster, images, tiny, tmp_path):
    last = str(images[-2])

    class Broken(EmbedBatches):  # fails on every attempt at the last full batch
        def embed(self, batch):
            if last in batch.column('path').to_pylist(): raise RuntimeError('this node is broken')
            return super().embed(batch)

    out = tmp_path/'emb.parquet'
    with pytest.raises(NearError, match='run the same command again') as e:
        run_batches(Broken, {'spec': backbone_spec(tiny)}, images, out, batch_size=40, retries=1)
    before = {f.name: f.read_bytes() for f in out.glob('*.parquet')}
    kept = sum(len(pd.read_parquet(out/f)) for f in before) if before else 0
    assert f'the {kept} rows it wrote are kept' in str(e.value)
    r = run_batches(EmbedBatches, {'spec': backbone_spec(tiny)}, images, out, batch_size=40)
    assert r['already_done'] == kept and r['written'] == N + 1 - kept
    assert all((out/f).read_bytes() == b for f, b in before.items())  # nothing written was touched
    df = read_results(out)
    assert df.path.tolist() == [str(p) for p in images] and df.path.is_unique


def test_predict_on_ray_equals_in_process(cluster, images, tiny, tmp_path):
    emb = tiny.embed_images(images[:N], cache=False, progress=False, num_workers=0).emb
    names = [f'name {k}' for k in range(4)]
    proto = np.stack([emb[k::4].mean(0) for k in range(4)])
    clf = NearClassifier(names, proto / np.linalg.norm(proto, axis=1, keepdims=True), backbone=tiny)
    clf_dir = clf.save_pretrained(tmp_path/'clf')
    out = tmp_path/'preds.parquet'
    r = run_batches(PredictBatches, {'classifier': str(clf_dir)}, images, out, batch_size=60)
    assert r['written'] == N + 1 and r['failures'] == []
    df = read_results(out)
    ref = NearClassifier.from_pretrained(clf_dir).predict(images, top=2)
    assert df.name.tolist() == [p[0][0] if p else '' for p in ref]
    assert len(set(df.name[:N])) > 1  # not one name for everything
    np.testing.assert_allclose(df.score[:N], [p[0][1] for p in ref[:N]], atol=1e-5)
    np.testing.assert_allclose(df.margin[:N], [p[0][1] - p[1][1] for p in ref[:N]], atol=1e-5)
    assert df.name.iloc[N] == '' and 'truncated' in df.error.iloc[N]


def test_label_on_ray_against_an_openai_compatible_server(cluster, images, tmp_path):
    "Two actors x 3 requests in flight against the fake server: the same answers as in-process labeling."
    sample = images[:40] + images[-1:]
    with FakeChatServer(latency=0.05) as srv:
        out = tmp_path/'labels.parquet'
        r = run_batches(LabelBatches, {'mllm': 'openai:fake-vlm', 'base_url': srv.url, 'domain': 'bird',
                                       'concurrency': 3}, sample, out, actors=2, batch_size=10, ok_only=True)
        assert r['written'] == 41 and srv.requests == 40
        store = LabelStore(tmp_path/'ref.sqlite')
        ref = label_images(sample, OpenAILabeler('fake-vlm', base_url=srv.url), store, domain='bird', progress=False)
    df = read_results(out)
    expected = export_labels(sample, store, ref.model, ref.prompt_hash, out=None)
    assert ref.done == 40 and df.path.tolist() == [str(p) for p in sample]
    assert df.names.tolist() == expected.names.tolist() and df.names[:40].str.contains('Specimen').all()
    assert (df.status[:40] == 'done').all() and df.status.iloc[40] == expected.status.iloc[40] != 'done'


def test_cli_embed_and_predict_with_ray(cluster, images, tmp_path, capsys):
    "`near embed --ray` and `near predict --ray` against the running cluster: the in-process results, in Parquet."
    cfg = tiny_clip_config(tmp_path/'tinycli.json')
    folder, out = str(images[0].parent), tmp_path/'emb.parquet'
    assert main(['embed', folder, '--model', str(cfg), '--random-init', '--ray', '--out', str(out), '-q']) == 0
    assert 'zz_truncated.jpg' in capsys.readouterr().out
    bb = Backbone(str(cfg), None, random_init=True)
    ref = bb.embed_images(images, cache=False, progress=False, num_workers=0)
    df = read_results(out)
    assert df.path.tolist() == [str(p) for p in images]
    np.testing.assert_allclose(embedding_matrix(df)[:N], ref.emb[:N], atol=1e-5)
    clf_dir = NearClassifier(['a', 'b', 'c'], ref.emb[:3], backbone=bb).save_pretrained(tmp_path/'clf')
    preds = tmp_path/'preds.parquet'
    assert main(['predict', folder, '--classifier', str(clf_dir), '--out', str(preds), '--ray', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['rows'], report['unreadable'], report['written']) == (N + 1, 1, N + 1)
    assert read_results(preds).name[:3].tolist() == ['a', 'b', 'c']
    assert main(['embed', folder, '--model', str(cfg), '--random-init', '--ray', '--out', str(tmp_path/'e.npz')]) == 1
    assert 'name a .parquet folder' in capsys.readouterr().err


PLUGIN = '''
from pathlib import Path
from near_nb.mllm import Answer

class StemLabeler:
    "Answers with the image's file name: a labeler from an installed package, not from near_nb."
    def __init__(self, arg): self.model, self.arg = f'stem-{arg}', arg
    def settings(self): return {'arg': self.arg}
    async def answer(self, req): return Answer(f'This is a {self.arg} {Path(req.path).stem}.')

def make_labeler(arg, **options): return StemLabeler(arg)
'''


def fake_installed_plugin(root:Path) -> Path:
    "A folder holding a fake installed distribution whose entry points declare the labeler scheme 'stem'."
    info = root/'near_stem_plugin-0.1.dist-info'
    info.mkdir(parents=True)
    (root/'near_stem_plugin.py').write_text(PLUGIN)
    (info/'METADATA').write_text('Metadata-Version: 2.1\nName: near-stem-plugin\nVersion: 0.1\n')
    (info/'entry_points.txt').write_text('[near_nb.labelers]\nstem = near_stem_plugin:make_labeler\n')
    return root


def test_label_on_ray_with_a_labeler_from_an_installed_package(cluster, images, tmp_path):
    "The workers find a pip-installed labeler through its entry point; the driver never imports it."
    from near_nb.core import Registry
    from near_nb.mllm import LABELERS
    if not isinstance(LABELERS, Registry): pytest.skip('needs mllm.LABELERS as a core.Registry ')
    site = fake_installed_plugin(tmp_path/'site')
    env = {'env_vars': {'PYTHONPATH': os.pathsep.join([str(site), os.environ.get('PYTHONPATH', '')])}}
    out = tmp_path/'labels.parquet'
    r = run_batches(LabelBatches, {'mllm': 'stem:Bloom'}, images[:6], out, batch_size=3, runtime_env=env)
    assert r['written'] == 6 and r['failures'] == []
    df = read_results(out)
    assert df.status.tolist() == ['done'] * 6 and df.model.tolist() == ['stem-Bloom'] * 6
    assert df.response.tolist() == [f'This is a Bloom {p.stem}.' for p in images[:6]]
    assert 'stem' not in LABELERS  # only the workers saw the plugin


def test_a_labeler_registered_only_in_the_driver_fails_with_the_fix(cluster, images, tmp_path):
    from near_nb.mllm import LABELERS, register_labeler
    register_labeler('driveronly', lambda arg, **kw: OpenAILabeler(arg, **kw))
    assert 'driveronly' in LABELERS
    with pytest.raises(NearError, match="not seen by the workers.*entry-point group 'near_nb.labelers'"):
        run_batches(LabelBatches, {'mllm': 'driveronly:x'}, images[:2], tmp_path/'l.parquet')
    assert not (tmp_path/'l.parquet').exists()
