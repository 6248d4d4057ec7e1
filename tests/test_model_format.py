"The classifier's safe format end to end: safetensors round trip in a fresh process, refused pickles, the Hub path."
import json, os, pickle, shutil, subprocess, sys
import numpy as np, pytest, torch
from PIL import Image
from near_nb.core import NearError
from near_nb.classifier import NearClassifier, FORMAT_VERSION
from near_nb.embed import Backbone
from near_nb.testing import tiny_clip_config

def tuned_classifier(tmp_path, name='tinyfmt'):
    "A classifier with a tiny random backbone and a perturbed ('tuned') image tower."
    bb = Backbone(str(tiny_clip_config(tmp_path/f'{name}.json')), None, random_init=True, seed=4).load()
    g = torch.Generator().manual_seed(0)
    tuned = {k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in bb.model.visual.state_dict().items()}
    W = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return NearClassifier(['a', 'b', 'c', 'd'], W, tau=0.07, active=[True, True, False, True], backbone=bb,
                          visual_state=tuned, meta={'mode': 'top', 'n_train': 12, 'config': {'k': 3}})

def images(d, n=4):
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n): Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d/f'{i}.png')
    return sorted(d.glob('*.png'))

RELOAD = '''
import json, sys
from near_nb.classifier import NearClassifier
clf = NearClassifier.from_pretrained(sys.argv[1])
print(json.dumps({'model_id': clf.backbone.model_id, 'pred': clf.predict(sys.argv[2:], top=2)}))
'''

def test_safetensors_round_trip_in_a_fresh_process(tmp_path):
    clf = tuned_classifier(tmp_path)
    files = images(tmp_path/'imgs')
    out = clf.save_pretrained(tmp_path/'clf')
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    cfg = json.loads((out/'config.json').read_text())
    assert (cfg['format'], cfg['format_version'], cfg['names'], cfg['tau']) == ('near_nb.NearClassifier', 2, ['a', 'b', 'c', 'd'], 0.07)
    assert cfg['backbone']['model_id'] == clf.backbone.model_id and cfg['backbone']['prep_id'] == clf.backbone.prep_id
    assert clf.backbone.model_id.endswith('/random-seed4')
    assert cfg['tuned_tower'] and cfg['near_config'] == {'k': 3} and cfg['training']['n_train'] == 12
    back = NearClassifier.from_pretrained(out)
    np.testing.assert_array_equal(back.weights, clf.weights)
    np.testing.assert_array_equal(back.active, clf.active)
    assert back.visual_state.keys() == clf.visual_state.keys()
    assert all(torch.equal(back.visual_state[k], v) for k, v in clf.visual_state.items())
    want = clf.predict(files, top=2)
    # a fresh process has never seen the tiny model: the config alone rebuilds its backbone and tower
    r = subprocess.run([sys.executable, '-c', RELOAD, str(out), *map(str, files)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got['model_id'] == clf.backbone.model_id
    assert [[n for n, _ in p] for p in got['pred']] == [[n for n, _ in p] for p in want]
    np.testing.assert_allclose([[s for _, s in p] for p in got['pred']], [[s for _, s in p] for p in want], atol=1e-5)
    # and the tuned tower matters: the zero-shot backbone gives other scores
    plain = NearClassifier(clf.names, clf.weights, clf.tau, clf.active, clf.backbone)
    assert not np.allclose([s for _, s in plain.predict(files, top=2)[0]], [s for _, s in want[0]])

class Evil:
    "A pickle that runs code when it is loaded."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

def test_malicious_pickles_are_refused(tmp_path):
    marker = tmp_path/'pwned'
    torch.save({'payload': Evil(marker)}, tmp_path/'evil.pt')
    with pytest.raises(NearError, match='trusted=True'): NearClassifier.load(tmp_path/'evil.pt')
    with pytest.raises(NearError, match='is a file'): NearClassifier.from_pretrained(tmp_path/'evil.pt')
    d = NearClassifier(['a', 'b'], np.eye(2, 4)).save_pretrained(tmp_path/'clf')
    (d/'model.safetensors').write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(NearError, match='not a readable safetensors file'): NearClassifier.from_pretrained(d)
    with pytest.raises(NearError, match='not a readable safetensors file'): NearClassifier.load(d)
    assert not marker.exists()
    # the same kind of file runs its code when trusted: the flag is what stands between
    with pytest.raises(NearError, match='not a saved NearClassifier'): NearClassifier.load(tmp_path/'evil.pt', trusted=True)
    assert marker.exists()

def test_old_pt_file_loads_only_when_trusted(tmp_path):
    old = {'format': 'near_nb.NearClassifier/1', 'names': ['x', 'y'], 'weights': torch.eye(2, 3), 'tau': 0.05,
           'active': torch.tensor([True, True]), 'backbone': None, 'visual_state': None, 'meta': {'mode': 'head'}}
    torch.save(old, tmp_path/'old.pt')
    with pytest.raises(NearError, match='pickled .pt file'): NearClassifier.load(tmp_path/'old.pt')
    clf = NearClassifier.load(tmp_path/'old.pt', trusted=True)
    back = NearClassifier.load(clf.save_pretrained(tmp_path/'converted'))
    assert back.names == ['x', 'y'] and back.meta['mode'] == 'head'
    np.testing.assert_array_equal(back.weights, np.eye(2, 3))

def test_newer_format_and_bad_folders_are_refused(tmp_path):
    d = NearClassifier(['a'], np.eye(1, 4)).save_pretrained(tmp_path/'clf')
    cfg = json.loads((d/'config.json').read_text())
    (d/'config.json').write_text(json.dumps({**cfg, 'format_version': FORMAT_VERSION + 1}))
    with pytest.raises(NearError, match='newer near_nb'): NearClassifier.from_pretrained(d)
    (tmp_path/'other').mkdir()
    (tmp_path/'other'/'notes.txt').write_text('mine')
    with pytest.raises(NearError, match='already holds other files'): NearClassifier(['a'], np.eye(1, 4)).save_pretrained(tmp_path/'other')
    with pytest.raises(NearError, match='no readable config.json'): NearClassifier.from_pretrained(tmp_path/'other')

def test_missing_checkpoint_names_pretrained_path(tmp_path):
    cfgf = tiny_clip_config(tmp_path/'tinyck2.json')
    ck = tmp_path/'tiny.pt'
    torch.save(Backbone(str(cfgf), None, random_init=True, seed=2).load().model.state_dict(), ck)
    clf = NearClassifier(['a', 'b'], np.eye(2, 32), backbone=Backbone(str(cfgf), str(ck)))
    d = clf.save_pretrained(tmp_path/'clf')
    assert len(json.loads((d/'config.json').read_text())['backbone']['checkpoint_sha256']) == 64
    moved = tmp_path/'elsewhere.pt'
    ck.rename(moved)
    back = NearClassifier.from_pretrained(d)   # loads, and predicts from embeddings
    assert back.predict(np.eye(2, 32, dtype=np.float32))[0][0][0] == 'a'
    with pytest.raises(NearError, match='--pretrained PATH'): back.predict(images(tmp_path/'imgs', 1))
    again = NearClassifier.from_pretrained(d, pretrained=str(moved))
    assert again.backbone.model_id == clf.backbone.model_id
    torch.save({'other': torch.zeros(1)}, tmp_path/'wrong.pt')
    with pytest.raises(NearError, match='is not the checkpoint'): NearClassifier.from_pretrained(d, pretrained=str(tmp_path/'wrong.pt')).predict(images(tmp_path/'imgs', 1))

class LocalHub:
    "The two `HfApi` calls `push_to_hub` makes, writing into a local folder instead of the Hub."
    def __init__(self, root): self.root, self.calls = root, []
    def create_repo(self, repo_id, **kw): self.calls.append(('create_repo', repo_id, kw))
    def upload_folder(self, repo_id, folder_path, commit_message):
        self.calls.append(('upload_folder', repo_id, commit_message))
        shutil.copytree(folder_path, self.root/repo_id, dirs_exist_ok=True)
        return f'file://{self.root/repo_id}'

def test_push_to_hub_and_from_pretrained_repo_id(tmp_path, monkeypatch):
    clf = tuned_classifier(tmp_path, 'tinyhub')
    hub = LocalHub(tmp_path/'hub')
    url = clf.push_to_hub('someone/flowers', private=True, api=hub)
    assert url.endswith('someone/flowers') and [c[0] for c in hub.calls] == ['create_repo', 'upload_folder']
    assert hub.calls[0][2]['private'] is True
    # what the Hub client leaves in its cache after a download: from_pretrained('user/repo') reads it offline
    repo = tmp_path/'cache'/'models--someone--flowers'
    commit = 'c' * 40
    shutil.copytree(hub.root/'someone'/'flowers', repo/'snapshots'/commit)
    (repo/'refs').mkdir()
    (repo/'refs'/'main').write_text(commit)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    back = NearClassifier.from_pretrained('someone/flowers', cache_dir=tmp_path/'cache')
    np.testing.assert_array_equal(back.weights, clf.weights)
    assert back.backbone.model_id == clf.backbone.model_id
    with pytest.raises(NearError, match='neither a folder here nor a Hub repo'):
        NearClassifier.from_pretrained('someone/missing', cache_dir=tmp_path/'cache')

def test_model_card_is_a_hub_card_with_data_figures_and_provenance(tmp_path):
    """The card re-read by huggingface_hub: front matter, random weights said (tags, config.json, first lines), the
    training data and figures from the summary the caller passes, and what made it."""
    from huggingface_hub import ModelCard
    clf = tuned_classifier(tmp_path, 'tinycard')
    summary = {'images': 12, 'with_answer': 11, 'vocabulary': 4, 'mllm': 'an-mllm', 'relabelled': 2,
               'loo_accuracy': 83.3, 'top_names': {'a': 5, 'b': 4}}
    out = clf.save_pretrained(tmp_path/'clf', summary=summary)
    cfg = json.loads((out/'config.json').read_text())
    assert cfg['random_weights'] is True and cfg['backbone']['random_init'] is True
    card = ModelCard.load(out/'README.md')
    assert card.data.library_name == 'near_nb' and 'random-weights' in card.data.tags
    assert 'base_model' not in card.data.to_dict()   # random weights have no base model
    text = card.text
    assert text.index('**Random weights.**') < text.index('## The model')
    for part in ('- training images: 12', '- images with an MLLM answer: 11', '- MLLM that named them: `an-mllm`',
                 '- NeaR settings: k=3', '| loo_accuracy | 83.3 |', '| relabelled | 2 |', 'from_pretrained',
                 '## Limits', f"- backbone: {clf.backbone.model_id}", '- mllm: an-mllm', '- date: '):
        assert part in text, part
    # loaded back and saved again without a summary: the figures config.json kept are still in the card
    again = NearClassifier.from_pretrained(out).save_pretrained(tmp_path/'clf2')
    assert '- NeaR settings: k=3' in (again/'README.md').read_text()
