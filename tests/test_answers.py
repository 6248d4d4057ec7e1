"The MLLM's answer as a second view (issue 27): cached vectors, neighbours in both views, their uses."
from dataclasses import replace
import numpy as np
import pytest
from near_nb.data import sample, sample_dir
from near_nb.evaluate import change_counts, char_encoder, semantic_acc
from near_nb.names import answers_vocabulary
from near_nb.near import NearConfig, fit_near_head, loo_name_scores, training_start
from near_nb.neighbors import ANSWER_ENCODER, answer_embeddings, knn, knn_purity, two_view
from near_nb.testbed import load_testbed, neighbour_purity, raw_name

@pytest.fixture(scope='module')
def smp():
    "The shipped sample: 306 real flower photos, their real answers, precomputed CLIP ViT-B/16 embeddings."
    s = sample()
    return s, answer_embeddings(s.labels.response.tolist())

@pytest.fixture(scope='module')
def vocab(smp):
    "The sample's vocabulary from stated synonyms only (no sentence encoder needed)."
    s, _ = smp
    return answers_vocabulary(s.labels.image_id.tolist(), s.labels.names.tolist(), s.labels.response.tolist())

def test_answer_vectors_are_cached_by_answers_and_encoder(tmp_path):
    texts = ['A red rose with layered petals.', 'A yellow tulip, cup-shaped.']
    a = answer_embeddings(texts, cache=tmp_path)
    files = list(tmp_path.glob('*.npy'))
    assert len(files) == 1 and ANSWER_ENCODER in files[0].name
    np.save(files[0], np.full_like(a, 7.0))                     # a cached file is read, not recomputed
    assert (answer_embeddings(texts, cache=tmp_path) == 7.0).all()
    answer_embeddings(texts[::-1], cache=tmp_path)              # other answers: another key
    assert len(list(tmp_path.glob('*.npy'))) == 2
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)

def test_two_view_is_the_weighted_sum_of_z_scored_similarities(smp):
    s, A = smp
    B = two_view(s.emb, A, 0.25)
    si, sa = s.emb @ s.emb.T, A @ A.T
    off = ~np.eye(len(A), dtype=bool)
    z = 0.75 * si / si[off].std() + 0.25 * sa / sa[off].std()
    assert np.allclose((B @ B.T)[off], z[off], atol=1e-3)
    assert two_view(s.emb, None, 0.25) is s.emb and two_view(s.emb, A, 0.0) is s.emb
    with pytest.raises(ValueError, match='3 answers for 306 images'): two_view(s.emb, A[:3], 0.5)

def test_answers_find_the_same_class_more_often_than_images(smp):
    s, A = smp
    gt = s.labels.gt_class.to_numpy()
    image, answer, both = knn_purity(s.emb, gt), knn_purity(A, gt), knn_purity(two_view(s.emb, A, 0.25), gt)
    assert image == 62.6                                       # the table, precomputed embeddings
    assert answer > image + 15 and both > answer, (image, answer, both)
    p = neighbour_purity(load_testbed(sample_dir()))
    assert set(p) == {'image', 'answer', 'both'} and p['image'] == image and p['both'] == both

def test_relabelling_with_answers_fixes_more_and_breaks_no_more(smp, vocab):
    s, A = smp
    voc, own = vocab
    gt, raw = s.labels.gt_class.to_numpy(), [raw_name(ns) for ns in s.labels.names]
    cfg = NearConfig(epochs=0, answer_weight=0.25)   # the view on (the default, 0, chosen by LODO: off)
    counts = {}
    for view, answers in (('images', None), ('both', s.labels.response.tolist()), ('vectors', A)):
        _, res = fit_near_head(s.emb, own, voc.names, cfg, answers=answers)
        counts[view] = change_counts(raw, res.relabel.after, res.relabel.changed, gt)
    assert counts['both'] == counts['vectors']                 # texts embedded as `answer_embeddings` does
    assert counts['both']['fixed'] > counts['images']['fixed'], counts
    assert counts['both']['broken'] <= counts['images']['broken'] + 1, counts
    assert counts['both']['fixed'] >= 2 * counts['both']['broken'], counts
    _, off = fit_near_head(s.emb, own, voc.names, replace(cfg, answer_relabel=False), answers=A)
    _, none = fit_near_head(s.emb, own, voc.names, cfg)
    _, zero = fit_near_head(s.emb, own, voc.names, NearConfig(epochs=0), answers=A)
    assert (zero.relabel.after == none.relabel.after).all()    # the default weight 0: answers change nothing
    assert (off.relabel.after == none.relabel.after).all()      # the switch turns the votes' second view off

def test_new_images_are_named_from_the_image_alone(smp, vocab):
    s, A = smp
    voc, own = vocab
    clf, _ = fit_near_head(s.emb[:200], own[:200], voc.names, NearConfig(epochs=0, answer_weight=0.25),
                           answers=A[:200])
    P = clf.scores(s.emb[200:])                                 # no answer is passed, none is needed
    assert P.shape == (106, len(voc.names))

def test_answer_knn_changes_only_which_neighbours(smp, vocab):
    s, A = smp
    voc, own = vocab
    cfg = NearConfig(epochs=0, relabel=False, neighbour_weight='auto', k=2, answer_weight=0.25)
    img = training_start(s.emb, own, len(voc.names), cfg, answers=A)
    both = training_start(s.emb, own, len(voc.names), replace(cfg, answer_knn=True), answers=A)
    assert (img.nn_idx == knn(s.emb, 2)[1]).all()              # off: the images' neighbours
    assert (both.nn_idx == knn(two_view(s.emb, A, cfg.answer_weight), 2)[1]).all()
    gt = s.labels.gt_class.to_numpy()
    assert (gt[both.nn_idx] == gt[:, None]).mean() > (gt[img.nn_idx] == gt[:, None]).mean()

def test_config_checks_the_answer_fields():
    with pytest.raises(Exception, match=r'answer_weight must be a number in \[0, 1\)'):
        NearConfig(answer_weight=1)
    with pytest.raises(Exception, match='answer_relabel must be True or False'):
        NearConfig(answer_relabel='yes')
    assert NearConfig(answer_weight=0).answer_weight == 0

def test_second_judge_scores_spelling_not_meaning():
    j = char_encoder()
    assert semantic_acc(['passion flower'], ['Passion Flower'], j) == pytest.approx(100, abs=1e-3)
    close, far = (semantic_acc([p], ['passion flower'], j) for p in ('passionflower', 'sea holly'))
    assert close > far

def test_agreement_of_the_views_moves_only_where_both_vote_alike(smp, vocab):
    s, A = smp
    voc, own = vocab
    gt, raw = s.labels.gt_class.to_numpy(), [raw_name(ns) for ns in s.labels.names]
    cfg = NearConfig(epochs=0, answer_weight=0.5, min_conf=0.3)
    counts, rl = {}, {}
    for agree in (False, True):
        _, res = fit_near_head(s.emb, own, voc.names, replace(cfg, answer_agree=agree), answers=A)
        rl[agree] = res.relabel
        counts[agree] = change_counts(raw, res.relabel.after, res.relabel.changed, gt)
    assert counts[True]['changed'] < counts[False]['changed'], counts
    assert counts[True]['broken'] <= counts[False]['broken'], counts
    assert counts[True]['fixed'] >= 2 * max(counts[True]['broken'], 1), counts
    moved = rl[True].changed                                   # each move: the images alone vote for it too
    alone_vote = loo_name_scores(s.emb, rl[True].before, len(voc.names)).argmax(1)
    assert moved.any() and (alone_vote[moved] == rl[True].after[moved]).all()
    free = rl[False].changed                                   # without agreement some moves lack that vote
    assert (alone_vote[free] != rl[False].after[free]).any()
    _, alone = fit_near_head(s.emb, own, voc.names, replace(cfg, answer_agree=True))
    _, plain = fit_near_head(s.emb, own, voc.names, cfg)
    assert (alone.relabel.after == plain.relabel.after).all()  # no answers: nothing to agree with

def test_merges_with_both_views_keep_only_what_each_view_supports(smp):
    s, A = smp
    lab = s.labels
    spelled = char_encoder()                    # names spelled alike read alike: merges to check, no model
    kw = dict(similar=0.7, emb=s.emb, support=0.25, answers=A)
    ids, names, texts = lab.image_id.tolist(), lab.names.tolist(), lab.response.tolist()
    either, _ = answers_vocabulary(ids, names, texts, spelled, **kw)
    both, _ = answers_vocabulary(ids, names, texts, spelled, agree=True, **kw)
    sentence = lambda v: [m for m in v.merges if m.reason.startswith('sentence')]
    assert 0 < len(sentence(both)) < len(sentence(either)), (len(sentence(both)), len(sentence(either)))
    assert all(m.reason.endswith('+visual+answers') for m in sentence(both))
    assert {(m.a, m.b) for m in sentence(both)} <= {(m.a, m.b) for m in sentence(either)}

def test_config_checks_the_agreement_switch():
    with pytest.raises(Exception, match='answer_agree must be True or False'):
        NearConfig(answer_agree='yes')
    assert NearConfig().answer_agree is False
