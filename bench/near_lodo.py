"""Choose NeaR's defaults by leave-one-dataset-out, and report each dev data set under the setting chosen without it.

    python bench/near_lodo.py [TESTBED_ROOT] [--datasets flower102,bird200,car196] [--seeds 3]
                              [--out bench/results/near_lodo.json]

1. Grid: every setting in GRID on every data set (one seed): transductive and held-out cACC/sACC and the
   labels NeaR changed (fixed / broken against the raw MLLM top-1 names).
2. Choice: for each data set D, the setting chosen on the *other* data sets by `choose` (below).
   `--reuse` takes step 1's figures from an earlier --out file.
3. Report: D under that setting with --seeds seeds, and the setting chosen on all data sets (the default).
4. Merge audit: the sentence merges each data set's vocabulary makes without and with visual support (and with
   the answers as its second witness), and how many join two ground-truth classes.
5. The 2-NN purity of each view (image, answer, both at the chosen answer weight), and sACC under a second judge
   (`evaluate.char_encoder`, character n-grams) beside all-MiniLM-L6-v2's in the report.
Every setting is a set of `NearConfig` fields, as `near fit` and `near bench testbed` take them; its key in
--out lists the fields that differ from the defaults. The answer view (issue 27): `answer_weight` 0 is the
images alone. The two views' agreement (co-training's rule): `answer_agree` (a relabelling move needs the other
view's own vote for the same name) and `merge_agree` (a sentence merge needs the support of the images and of
the answers, at the `merge_support` quantile).
Embeddings are the test bed's precomputed OpenAI CLIP ViT-B/16 vectors; answers are Qwen2.5-VL-72B's."""
import argparse, itertools, json, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np
from near_nb.testbed import bench_testbed, load_testbed, answer_view, neighbour_purity
from near_nb.evaluate import merge_audit, char_encoder
from near_nb.names import sentence_encoder
from near_nb.near import NearConfig
from near_nb.names import answers_vocabulary

MIN_CONF = (0.4, 0.5, 0.6, 0.7, 0.8)
MERGE_SUPPORT = (0.0, 0.25)  # 0: sentence merges need no visual support
PRODEN = (True, False)
MARGIN = 3  # see `admissible`
NEAREST = (0.2, 0.4)  # the class-mean head's share of a name's nearest training image (0: means only)
GRID = [{'relabel': False, 'merge_support': s, 'proden': p, 'nearest': 0.0}
        for s, p in itertools.product(MERGE_SUPPORT, PRODEN)] + \
       [{'relabel': True, 'min_conf': c, 'merge_support': s, 'proden': p, 'nearest': 0.0}
        for c, s, p in itertools.product(MIN_CONF, MERGE_SUPPORT, PRODEN)] + \
       [{'relabel': True, 'min_conf': c, 'proden': p, 'nearest': b}
        for c, p, b in itertools.product(MIN_CONF, PRODEN, NEAREST)]  # the memory only with the chosen support
GRID = [s | {'answer_weight': 0.0} for s in GRID]  # the images alone, as before the answer view
GRID += [{'relabel': True, 'min_conf': c, 'proden': False, 'nearest': 0.2, 'answer_weight': 0.25}
         for c in (0.3, 0.4, 0.5)]  # PRODEN and nearest as chosen without the answers; weight 0.25 (2-NN purity)
GRID += [{'relabel': True, 'min_conf': 0.5, 'capacity': False, 'proden': False, 'nearest': 0.2,
          'answer_weight': 0.25}]  # purer neighbours: does relabelling still need the capacity rule?
AGREE = {'relabel': True, 'min_conf': 0.3, 'merge_support': 0.5, 'merge_agree': True, 'proden': False,
         'nearest': 0.2, 'answer_weight': 0.5, 'answer_agree': True}  # the two views must agree (co-training)
GRID += [AGREE, AGREE | {'min_conf': 0.4}, AGREE | {'merge_support': 0.25}, AGREE | {'answer_weight': 0.25},
         AGREE | {'answer_weight': 0.75},
         AGREE | {'answer_weight': 0.0},  # votes from the images alone, the answers' own vote must agree
         AGREE | {'merge_support': 0.0, 'merge_agree': False},  # agreement in relabelling alone
         AGREE | {'answer_agree': False}]  # agreement in the merges alone
PURITY_WEIGHT = 0.25  # the answers' share in the purity table's 'both' (the grid's answer weight)

def key(setting:dict) -> str:
    "A setting's key in --out: its fields that differ from `NearConfig`'s defaults (one key per configuration)."
    default = NearConfig()
    return json.dumps({k: v for k, v in setting.items() if getattr(default, k) != v}, sort_keys=True)

def run(root, ds, setting, enc, seeds, judge2=None):
    cfg = replace(NearConfig(), **setting)
    return bench_testbed(Path(root)/ds, seeds=seeds, cfg=cfg, encode=enc, judge2=judge2)

def admissible(r) -> bool:
    """The bar a setting must clear on a data set it is chosen on: the issue's targets (transductive sACC at most
    1 point under the raw top-1 names; held out, NeaR at least CE on raw names in cACC, sACC and acc_mapped),
    and the labels NeaR changes, pooled over both protocols, right at least MARGIN times as often as wrong.
    MARGIN is 3, not the issue's 2: in the first leave-one-dataset-out run (bar 2, per protocol), the setting
    that cleared 2 on flower102 and car196 (min_conf 0.5) gave 14 fixed / 9 broken held out on bird200. A bar
    met narrowly on two data sets does not hold on a third. acc_mapped joined the bar with the answer view's
    agreement settings (it is one of issue 27's targets); a result stored before acc_mapped was recorded
    cannot show it and does not pass. The issue's transductive +5 cACC over the top-1 names is not a bar here:
    it is what `gain` ranks by, and each data set's report says whether it is met."""
    t, h = r['transductive'], r['heldout']
    fixed = t['near']['changes']['fixed'] + h['near']['changes']['fixed']
    broken = t['near']['changes']['broken'] + h['near']['changes']['broken']
    mapped = 'acc_mapped' in h['near'] and h['near']['acc_mapped'] >= h['ce_raw']['acc_mapped']
    return (fixed >= MARGIN * broken and t['near']['sacc'] >= t['mllm_top1']['sacc'] - 1 and mapped
            and h['near']['cacc'] >= h['ce_raw']['cacc'] and h['near']['sacc'] >= h['ce_raw']['sacc'])

def gain(r) -> float:
    "cACC gained over the raw top-1 names (transductive) plus over cross-entropy on raw names (held out)."
    t, h = r['transductive'], r['heldout']
    return t['near']['cacc'] - t['mllm_top1']['cacc'] + h['near']['cacc'] - h['ce_raw']['cacc']

def choose(results:dict, datasets:list) -> dict:
    "The setting admissible on every one of `datasets` with the largest mean gain (ties: fewer changes)."
    ok = [s for s in GRID if all(admissible(results[ds][key(s)]) for ds in datasets)] or GRID[:1]
    def score(s):
        rs = [results[ds][key(s)] for ds in datasets]
        return (round(np.mean([gain(r) for r in rs]), 2), -sum(r['transductive']['near']['changes']['changed'] for r in rs))
    return max(ok, key=score)

def slim(r) -> dict:
    "What `admissible` and `gain` read of one run."
    return {p: {m: {x: v for x, v in r[p][m].items() if x in ('cacc', 'sacc', 'acc_mapped', 'changes')}
                for m in ('near', 'mllm_top1', 'ce_raw') if m in r[p]} for p in ('transductive', 'heldout')}

def audit(root, ds, enc):
    tb = load_testbed(Path(root)/ds)
    lab, rows = tb.labels, {}
    ans = answer_view(tb, np.arange(len(lab)))
    for kind, support, witness in (('text only', None, None), ('visual support 0.25', 0.25, None),
                                   ('visual support 0.25, answers as 2nd witness', 0.25, ans),
                                   ('visual support 0.25, both views agree', 0.25, ans),
                                   ('visual support 0.5, both views agree', 0.5, ans)):
        voc, _ = answers_vocabulary(lab.image_id.tolist(), lab.names.tolist(), lab.response.tolist(), enc, similar=0.9,
                                    emb=tb.emb, support=support, answers=witness, agree='agree' in kind)
        a = merge_audit(voc, lab.image_id.tolist(), lab.gt_class.tolist())
        a = a[a.reason != 'stated']
        rows[kind] = {
            'merges': len(a), 'one class': int((a.joins == 'one class').sum()),
            'two classes': int((a.joins == 'two classes').sum())}
    voc, _ = answers_vocabulary(lab.image_id.tolist(), lab.names.tolist(), lab.response.tolist())
    a = merge_audit(voc, lab.image_id.tolist(), lab.gt_class.tolist())
    rows['stated synonyms'] = {'merges': len(a), 'one class': int((a.joins == 'one class').sum()),
                               'two classes': int((a.joins == 'two classes').sum())}
    return rows

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('root', nargs='?', default='../shared/data/testbed')
    ap.add_argument('--datasets', default='flower102,bird200,car196')
    ap.add_argument('--seeds', type=int, default=3, help='seeds of the reports (the grid runs one)')
    ap.add_argument('--out', default='bench/results/near_lodo.json')
    ap.add_argument('--reuse', action='store_true', help="take the grid's figures from --out instead of running it")
    a = ap.parse_args()
    enc, t0, dss = sentence_encoder(), time.time(), a.datasets.split(',')
    grid = json.loads(Path(a.out).read_text())['grid_results'] if a.reuse else {ds: {} for ds in dss}
    for ds, s in itertools.product(dss, GRID):
        if key(s) not in grid[ds]:
            grid[ds][key(s)] = slim(run(a.root, ds, s, enc, 1))
            Path(a.out).write_text(json.dumps({'grid_results': grid}))  # a stopped run resumes with --reuse
        r = grid[ds][key(s)]
        print(ds, key(s), f"gain {gain(r):.1f}", 'admissible' if admissible(r) else '-',
              r['transductive']['near']['changes'], flush=True)
    chosen = {ds: choose(grid, [o for o in dss if o != ds]) for ds in dss}
    default = choose(grid, dss)
    report = {ds: run(a.root, ds, chosen[ds], enc, a.seeds, judge2=char_encoder()) for ds in dss}
    out = {'sentence_model': enc.model_name, 'embeddings': 'precomputed OpenAI CLIP ViT-B/16 (test bed)',
           'grid': [dict(s) for s in GRID], 'grid_seeds': 1, 'report_seeds': a.seeds,
           'rule': 'admissible on every data set it is chosen on (admissible: the targets with acc_mapped, '
                   'and fixed >= '
                   f'{MARGIN} x broken pooled over both protocols), then the largest mean cACC gain (transductive '
                   'over top-1 + held-out over CE on raw names)',
           'chosen_without': chosen, 'default': default, 'report': report,
           'grid_results': grid,
           'merge_audit': {ds: audit(a.root, ds, enc) for ds in dss},
           'purity': {ds: neighbour_purity(load_testbed(Path(a.root)/ds), weight=PURITY_WEIGHT) for ds in dss},
           'purity_answer_weight': PURITY_WEIGHT,
           'seconds': round(time.time() - t0)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print('default (chosen on all):', default)
    for ds in dss: print(ds, 'chosen without it:', chosen[ds])

if __name__ == '__main__': sys.exit(main())
