"""`near run`'s engine, `pipeline.run_job`, on 24 real photos of the shipped sample with a local OpenAI-compatible chat
server as the MLLM and a tiny random-weight CLIP: a run that stops (failed answers, then an error in NeaR's step) is
resumed by running it again, and pays only for the answers it did not have; every file is there and readable."""
import json, shutil
import numpy as np, pandas as pd, pytest
from near_nb import pipeline
from near_nb.classifier import NearClassifier
from near_nb.data import sample
from near_nb.embed import Backbone
from near_nb.formats import read_table
from near_nb.mllm import OpenAILabeler
from near_nb.near import NearConfig
from near_nb.testing import FakeChatServer, register_tiny_clip

NAMES = ('Rose', 'Tulip', 'Daisy', 'Sunflower')

def answer(fp:str) -> str: return f'The flower is a **{NAMES[int(fp[:8], 16) % len(NAMES)]}**, clearly.'

def labeler(url:str) -> OpenAILabeler: return OpenAILabeler('fake-vlm', base_url=url, max_attempts=1, timeout=20)

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "24 real photos of the shipped sample, in one folder."
    d = tmp_path_factory.mktemp('photos')
    for f in sample().images.files[::12][:24]: shutil.copy(f, d/f.name)
    return d

@pytest.fixture(scope='module')
def backbone(tmp_path_factory):
    return Backbone(register_tiny_clip(folder=tmp_path_factory.mktemp('tiny')), None, random_init=True)

@pytest.fixture(scope='module')
def runs(photos, backbone, tmp_path_factory):
    "Run 1: every other answer fails and NeaR's step raises; run 2: the server is well; run 3: nothing left to do."
    out, cfg = tmp_path_factory.mktemp('runs')/'job', NearConfig(epochs=5)
    kw = dict(sample=16, backbone=backbone, config=cfg, seed=3, progress=False)
    failing = lambda fp, n: '500' if int(fp[:8], 16) % 2 else None
    with FakeChatServer(answer=answer, fault=failing) as srv1, pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, 'fit_near_head', lambda *a, **k: (_ for _ in ()).throw(RuntimeError('injected')))
        with pytest.raises(RuntimeError, match='injected'): pipeline.run_job(photos, out, labeler=labeler(srv1.url), **kw)
        state1 = pipeline.run_state(out)
    with FakeChatServer(answer=answer) as srv2:
        second = pipeline.run_job(photos, out, labeler=labeler(srv2.url), **kw)
        third = pipeline.run_job(photos, out, labeler=labeler(srv2.url), **kw)
    return dict(out=out, srv1=srv1, srv2=srv2, state1=state1, second=second, third=third)

def test_resumed_run_pays_each_answer_once(runs):
    srv1, srv2, second = runs['srv1'], runs['srv2'], runs['second']
    answered1 = sum(srv1.completed.values())
    assert 0 < answered1 < 16 and srv1.requests == 16         # run 1 asked about the 16 sampled images once each
    assert set(runs['state1']) == {'labels', 'embeddings'}    # and stopped in NeaR's step
    assert srv2.requests == second['paid_calls'] == 16 - answered1  # run 2 asked only for the missing answers
    assert set(srv2.completed) == {fp for fp, n, kind in srv1.outcomes if kind == '500'}
    assert second['reused'] == ['embeddings'] and second['failed_calls'] == 0
    third = runs['third']
    assert third['paid_calls'] == 0 and third['reused'] == list(pipeline.STEP_FILES)
    assert srv2.requests == 16 - answered1                    # run 3 asked nothing

def test_every_file_is_there_and_readable(runs):
    out = runs['out']
    assert set(pipeline.RUN_FILES.values()) <= {p.name for p in out.iterdir()}
    labels = read_table(out/'labels.csv')
    assert len(labels) == 16 and set(labels.status) == {'done'} and set(labels.model) == {'fake-vlm'}
    refined, preds = read_table(out/'refined_labels.csv'), read_table(out/'predictions.csv')
    assert len(refined) == 16 and set(refined.mllm) <= set(NAMES) and refined.response.str.contains('flower').all()
    assert len(preds) == 8 and not set(preds.path) & set(refined.path) and (preds.name != '').all()
    clf = NearClassifier.from_pretrained(out/'classifier')
    assert set(preds.name) <= set(clf.names)
    z = np.load(out/'embeddings.npz')
    assert z['emb'].shape[0] == 24 and z['valid'].all() and str(z['model_id']).startswith('near-tiny-clip')
    rep = json.loads((out/'report.json').read_text())
    assert rep['random_init'] is True and 'random' in rep['warning']   # random weights are never silent
    assert rep['provenance']['mllm'] == 'fake-vlm' and rep['provenance']['backbone'].startswith('near-tiny-clip')
    assert rep['provenance']['near_nb'] and rep['provenance']['date']
    assert rep['tokens_all_runs']['prompt'] == 85 * 16 and rep['sample'] == 16 and rep['images'] == 24
    html = (out/'near_map.html').read_text()
    data = json.loads(html.split('id="near-data">')[1].split('</script>')[0])
    assert len(data['labels']) == 24 and 'Plotly.newPlot' in html

def test_force_redoes_every_step_without_paying(runs, photos, backbone):
    with FakeChatServer(answer=answer) as srv:
        r = pipeline.run_job(photos, runs['out'], labeler=labeler(srv.url), sample=16, backbone=backbone,
                             config=NearConfig(epochs=5), seed=3, force=True, progress=False)
    assert r['reused'] == [] and r['paid_calls'] == 0 and srv.requests == 0

def test_a_folder_of_other_files_is_refused(tmp_path, backbone):
    (tmp_path/'notes.txt').write_text('mine')
    with pytest.raises(Exception, match='holds other files'):
        pipeline.run_job(tmp_path, tmp_path, labeler=None, backbone=backbone, config=None)
