"Description prototypes end to end: a text LLM on the fault-injecting server, the store, the fused head in modes 1-3."
import json, os, subprocess, sys
import numpy as np, pandas as pd, pytest, torch
from near_nb.classifier import NearClassifier
from near_nb.data import ImageSet
from near_nb.describe import (OpenAIDescriber, HFDescriber, describe, describe_prompt, name_hash,
                              descriptions_frame, ReplayDescriber)
from near_nb.embed import Backbone
from near_nb.testing import tiny_clip_config, tiny_llm, tiny_testbed, FakeChatServer, fingerprint, fake_descriptors
from near_nb.mllm import LabelStore, OpenAILabeler, label_images
from near_nb.near import fit_near_head, NearConfig
from near_nb.tune import fit_near_tower
from near_nb.prototypes import grain_prototypes, lafg_prototypes, name_prototypes, fuse_text, recall_at_k
from near_nb.cli import main

NAMES = [f'Specimen {i}' for i in range(18)]
NEAR = [sys.executable, '-c', 'import sys; from near_nb.cli import main; sys.exit(main())']

def served(fp):
    "The descriptors the fake server answers for the prompt with this fingerprint."
    return json.loads(fake_descriptors(fp).strip('`').removeprefix('json'))['descriptors']

def test_describe_survives_every_fault_pays_once_and_resumes(tmp_path):
    tmpl = describe_prompt('flower', 5)
    fps = {n: fingerprint(tmpl.replace('{name}', n)) for n in NAMES}
    faults = ('429', '500', '503', 'drop', 'malformed', 'empty', 'slow', None, None)
    plan = {fp: faults[k % len(faults)] for k, fp in enumerate(fps.values())}
    key = 'sk-describe-' + 'Q7' * 16
    with FakeChatServer(describe=True, fault=lambda fp, n: plan.get(fp) if n == 1 else None, slow_seconds=2.0,
                        retry_after='0.2') as srv:
        llm = OpenAIDescriber('fake-llm', base_url=srv.url, api_key=key, timeout=1.0, backoff=0.05,
                              prices=(1.0, 2.0))
        desc, run = describe(NAMES, llm, tmp_path/'s.sqlite', domain='flower', concurrency=6, progress=False)
        assert run.ok and (run.done, run.requests) == (18, 18), run.summary()
        assert desc == {n: served(fps[n]) for n in NAMES}                   # JSON and fenced JSON both parsed
        assert all(srv.completed[fp] == 1 for fp in fps.values())           # no answer paid for twice
        assert run.cost > 0
        assert run.cost == pytest.approx((run.prompt_tokens * 1.0 + run.completion_tokens * 2.0) / 1e6)
        asked = srv.requests
        again, run2 = describe(NAMES + ['Specimen 99'], llm, tmp_path/'s.sqlite', domain='flower', progress=False)
        assert (run2.skipped, run2.requests, srv.requests) == (18, 1, asked + 1)   # only the new name is asked
        assert {n: again[n] for n in NAMES} == desc
    assert key.encode() not in (tmp_path/'s.sqlite').read_bytes()
    df = LabelStore(tmp_path/'s.sqlite').frame('fake-llm')
    assert set(df.sha256) == {name_hash(n) for n in NAMES + ['Specimen 99']} and (df.attempts >= 1).all()
    assert df.set_index('path').loc[NAMES[0], 'attempts'] == 2                 # a 429, then the answer

def test_descriptions_share_the_image_answers_store_and_replay(tmp_path, photos):
    store = LabelStore(tmp_path/'shared.sqlite')
    with FakeChatServer(describe=True) as srv:
        vlm = OpenAILabeler('fake-vlm', base_url=srv.url, api_key='sk-t')
        img = label_images(sorted(photos.glob('*.jpg')), vlm, store, domain='flower', progress=False)
        llm = OpenAIDescriber('fake-llm', base_url=srv.url, api_key='sk-t')
        desc, run = describe(['Rose', 'Daisy'], llm, store, domain='flower', progress=False)
    assert img.done == 12 and run.done == 2
    assert len(store) == 14 and set(store.frame().model) == {'fake-vlm', 'fake-llm'}
    assert store.frame('fake-vlm').response.str.contains('Specimen').all()   # image answers stay image answers
    out = descriptions_frame(store, ['Rose', 'Daisy'], 'fake-llm', run.prompt_hash)
    out.to_csv(tmp_path/'desc.csv', index=False)
    back, _ = describe(['Rose', 'Daisy'], ReplayDescriber(tmp_path/'desc.csv'), tmp_path/'r.sqlite', domain='flower',
                       progress=False)
    assert back == desc and all(len(v) == 5 for v in back.values())

def test_local_transformers_describer(tmp_path):
    llm = HFDescriber(str(tiny_llm(tmp_path/'tiny-llm')), max_new_tokens=12, batch_size=2)
    desc, run = describe(['Rose', 'Daisy', 'Tulip'], llm, tmp_path/'s.sqlite', progress=False)
    assert (run.done, len(run.failed), set(desc)) == (3, 0, {'Rose', 'Daisy', 'Tulip'})
    df = LabelStore(tmp_path/'s.sqlite').frame(llm.model)
    assert (df.status == 'done').all() and df.response.str.len().gt(0).all()   # random weights: noise, but stored
    _, run2 = describe(['Rose', 'Daisy', 'Tulip'], llm, tmp_path/'s.sqlite', progress=False)
    assert (run2.requests, run2.skipped) == (0, 3)

def tiny_setup(tmp_path, photos):
    "A tiny random-weight CLIP, 12 photos named by 4 names, descriptors from the fake server."
    bb = Backbone(str(tiny_clip_config(tmp_path/'tinyd.json')), None, random_init=True, seed=1)
    files = sorted(photos.glob('*.jpg'))
    names = ['Rose', 'Daisy', 'Tulip', 'Iris']
    own = [[i % 4] for i in range(12)]
    with FakeChatServer(describe=True) as srv:
        llm = OpenAIDescriber('fake-llm', base_url=srv.url, api_key='sk-t')
        desc, _ = describe(names, llm, tmp_path/'d.sqlite', progress=False)
    return bb, files, names, own, desc

def predict_cli(clf_dir, photos, out):
    r = subprocess.run(NEAR + ['predict', str(photos), '--classifier', str(clf_dir), '--out', str(out), '-q'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return pd.read_csv(out)

def test_fused_head_mode1_saved_loaded_and_used_by_near_predict(tmp_path, photos):
    bb, files, names, own, desc = tiny_setup(tmp_path, photos)
    emb = bb.embed_images(ImageSet(files), cache=False, progress=False, num_workers=0).emb
    clf, res = fit_near_head(emb, own, names, NearConfig(epochs=3), backbone=bb)
    T = {'name': name_prototypes(bb, names), 'grain': grain_prototypes(bb, names, desc),
         'lafg': lafg_prototypes(bb, names, desc, n_attributes=6)[0]}
    assert all(t.shape == clf.weights.shape for t in T.values())
    assert all(set(recall_at_k(t, emb, res.refined)) == {'R@1', 'R@5', 'R@10'} for t in T.values())
    # one weight: the path, not the choice
    fused, tab = fuse_text(clf, emb, res.refined, T['grain'], 'grain', alphas=(0.6,))
    assert fused.text_alpha == 0.6 and np.abs(fused.cosines(emb) - clf.cosines(emb)).max() > 1e-3
    fused.save_pretrained(tmp_path/'clf')
    cfg = json.loads((tmp_path/'clf'/'config.json').read_text())
    # NeaR's head keeps its training images (memory): format 4, which holds the text head too
    assert fused.memory is not None and cfg['format_version'] == 4 and cfg['nearest'] == fused.nearest
    assert cfg['text_head']['method'] == 'grain'
    assert cfg['text_head']['alpha'] == 0.6
    df = predict_cli(tmp_path/'clf', photos, tmp_path/'p.csv')                 # a fresh process, the CLI
    want = fused.predict([str(f) for f in files])
    assert df.name.tolist() == [p[0][0] for p in want]
    np.testing.assert_allclose(df.score, [p[0][1] for p in want], atol=1e-4)

@pytest.mark.parametrize('n_top', [1, None], ids=['mode2', 'mode3'])
def test_fused_head_on_a_tuned_tower(tmp_path, photos, n_top):
    bb, files, names, own, desc = tiny_setup(tmp_path, photos)
    cfg = NearConfig(epochs=2, batch_size=4, lr=1e-4)
    clf, res = fit_near_tower(bb, ImageSet(files), own, names, cfg=cfg, n_top=n_top)
    emb = clf.embed([str(f) for f in files])                                   # the tuned tower's features
    zs = bb.embed_images(ImageSet(files), cache=False, progress=False, num_workers=0).emb
    assert np.abs(emb - zs).max() > 1e-4                                       # the tower really was tuned
    T, D, vocab = lafg_prototypes(bb, names, desc, n_attributes=5)
    fused, tab = fuse_text(clf, emb, res.refined, T, 'lafg')
    assert len(tab) == 11 and tab.n.iloc[0] > 0 and 0 <= fused.text_alpha <= 1
    assert fused.meta['text_head']['loo_acc'] == dict(zip(map(str, tab.alpha), tab.loo_acc))
    forced, _ = fuse_text(clf, emb, res.refined, T, 'lafg', alphas=(0.5,))
    forced.save_pretrained(tmp_path/'clf')
    back = NearClassifier.from_pretrained(tmp_path/'clf')
    assert back.visual_state is not None and back.text_alpha == 0.5
    np.testing.assert_allclose(back.embed([str(f) for f in files]), emb, atol=1e-5)
    assert back.predict([str(f) for f in files], top=2) == forced.predict([str(f) for f in files], top=2)

def test_open_clip_training_checkpoint_loads_as_backbone(tmp_path, photos):
    "A GRAIN-style checkpoint (open_clip's training format: epoch, 'module.'-prefixed state_dict) as the backbone."
    cfg = tiny_clip_config(tmp_path/'tinygrain.json')
    src = Backbone(str(cfg), None, random_init=True, seed=7).load()
    ck = tmp_path/'epoch_3.pt'
    state = {f'module.{k}': v for k, v in src.model.state_dict().items()}
    torch.save({'epoch': 3, 'name': 'grain-like', 'state_dict': state}, ck)
    bb = Backbone(str(cfg), pretrained=str(ck))
    files = ImageSet(sorted(photos.glob('*.jpg')))
    a = src.embed_images(files, cache=False, progress=False, num_workers=0).emb
    b = bb.embed_images(files, cache=False, progress=False, num_workers=0).emb
    np.testing.assert_allclose(a, b, atol=1e-5)
    words = ['rose', 'daisy']
    np.testing.assert_allclose(name_prototypes(src, words), name_prototypes(bb, words), atol=1e-5)
    other = Backbone(str(cfg), None, random_init=True, seed=8)
    other = other.embed_images(files, cache=False, progress=False, num_workers=0).emb
    assert np.abs(other - a).max() > 1e-3                                      # the checkpoint's weights were used

def test_a_grown_classifier_keeps_its_text_head():
    "The cascade's new names (cascade.grow_classifier) extend a fused head; a new name scores by its image mean."
    from near_nb.cascade import grow_classifier
    rng = np.random.default_rng(0)
    unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)
    W, T = unit(rng.normal(size=(3, 16))), unit(rng.normal(size=(3, 16)))
    clf = NearClassifier(['a', 'b', 'c'], W, text_weights=T, text_alpha=0.4, meta={'text_head': {'method': 'g'}})
    emb = unit(rng.normal(size=(2, 16)))
    table = pd.DataFrame({'path': ['x.jpg', 'y.jpg'], 'name': ['d', 'b'], 'answer': ['d', 'b'],
                          'source': ['mllm (new name)', 'classifier']})
    grown, added = grow_classifier(clf, table, emb, model='fake-vlm')
    assert grown.names == ['a', 'b', 'c', 'd'] and grown.text_alpha == 0.4
    np.testing.assert_allclose(grown.text_weights[:3], T)
    np.testing.assert_allclose(grown.cosines(emb[:1])[0, 3], 1.0, atol=1e-5)   # its own image mean, both halves
    np.testing.assert_allclose(grown.cosines(emb)[:, :3], clf.cosines(emb), atol=1e-6)

def test_near_bench_testbed_with_text(tmp_path, capsys):
    "`near bench testbed --text-model --text-pretrained`: zero-shot 3 ways, fused, Recall@K (a tiny model: noise)."
    cfg = tiny_clip_config(tmp_path/'tinybench.json')
    ck = tmp_path/'tiny.pt'
    torch.save(Backbone(str(cfg), None, random_init=True, seed=2).load().model.state_dict(), ck)
    tb = tiny_testbed(tmp_path/'tb', Backbone(str(cfg), pretrained=str(ck)), n_classes=8)
    code = main(['bench', 'testbed', str(tb), '--seeds', '1', '--text-model', str(cfg),       # in this process
                 '--text-pretrained', str(ck), '--json', str(tmp_path/'r.json'), '-q'])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    rep = json.loads((tmp_path/'r.json').read_text())
    kinds = ('name', 'grain', 'lafg')
    for p in ('transductive', 'heldout'):
        want = {"zero_shot_clip", "zero_shot_grain", "zero_shot_lafg", "fused_name", "fused_grain", "fused_lafg"}
        assert want <= set(rep[p])
        assert 'zero_shot_name' not in rep[p] and {'cacc', 'sacc', 'names'} <= set(rep[p]['fused_grain'])
    assert 'near_head' in rep['transductive']                               # what the fused heads start from
    assert set(rep['text']['recall']) == set(kinds) and set(rep['text']['recall']['lafg']) == {'R@1', 'R@5', 'R@10'}
    assert all(0 <= rep['text']['alpha'][p][k] <= 1 for p in ('transductive', 'heldout') for k in kinds)
    assert 'not measured' in rep['text']['note'] and 'mined' in rep['text']['descriptors']
    assert 'fused_grain' in out and 'Recall@1/5/10' in out
    wide, wide_ck = tiny_clip_config(tmp_path/'tinywide.json', embed_dim=48), tmp_path/'wide.pt'
    torch.save(Backbone(str(wide), None, random_init=True).load().model.state_dict(), wide_ck)
    code = main(['bench', 'testbed', str(tb), '--seeds', '1', '--text-model', str(wide),
                 '--text-pretrained', str(wide_ck), '-q'])
    err = capsys.readouterr().err
    assert code == 1 and err.count('\n') == 1, err
    assert '48-d embeddings, the test bed 32-d' in err
