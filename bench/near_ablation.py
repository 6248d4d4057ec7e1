"""NeaR ablation on test-bed datasets: each part switched off (or on) against the defaults, both protocols.

    python bench/near_ablation.py [TESTBED_ROOT] [--seeds 1] [--out bench/results/near_ablation.json]

A variant named '+ ...' switches on an option that is off by default (contrasts, neighbours' names in the
candidate sets, PRODEN, the GMM split, the merges' checks, the answer view in the relabelling's votes or in the
kNN graph, the two views made to agree); the others switch a default part off. Writes one row per
(dataset, variant): transductive and held-out cACC/sACC (means over seeds) and the labels NeaR changed against the
raw MLLM top-1 names (fixed / broken). The defaults are `NearConfig`'s (docs/design.md says how they relate to
`bench/near_lodo.py`'s choice). Embeddings are the test bed's precomputed OpenAI CLIP ViT-B/16 vectors;
answers are Qwen2.5-VL-72B's."""
import argparse, json, sys, time
from dataclasses import asdict, replace
from pathlib import Path
from near_nb.testbed import bench_testbed
from near_nb.names import sentence_encoder
from near_nb.near import NearConfig

NEIGHBOURS = {'neighbour_weight': 'auto'}  # neighbours' names in every candidate set, for PRODEN and the GMM
VARIANTS = {  # name -> (config changes, bench_testbed keyword changes); '+': an option switched on
    'default': ({}, {}),
    'no alternatives (first names only)': ({}, {'alternatives': False}),
    '+ contrasts': ({'contrasts': True}, {}),
    '+ sentence merges need visual support (merge_support=0.25)': ({'merge_support': 0.25}, {}),
    'no sentence merges (stated synonyms only)': ({}, {'similar': 0.0}),
    'no leave-one-out relabelling': ({'relabel': False}, {}),
    'relabelling without the capacity rule': ({'capacity': False}, {}),
    "+ neighbours' names in candidate sets (neighbour_weight=auto)": (NEIGHBOURS, {}),
    "+ PRODEN re-weighting (with neighbours' names)": ({**NEIGHBOURS, 'proden': True}, {}),
    "+ GMM split, consensus refinement (with neighbours' names)": ({**NEIGHBOURS, 'gmm': True}, {}),
    "+ GMM split, relaxed refinement (with neighbours' names)":
        ({**NEIGHBOURS, 'gmm': True, 'refine': 'relax'}, {}),
    "+ answer view in relabelling's votes (answer_weight=0.25)": ({'answer_weight': 0.25}, {}),
    "+ PRODEN over neighbours' names found in both views (neighbour_weight=auto, answer_knn, answer_weight=0.25)":
        ({**NEIGHBOURS, 'proden': True, 'answer_knn': True, 'answer_weight': 0.25}, {}),
    '+ the two views agree (answer_weight=0.5, min_conf=0.3, answer_agree, merges with both views at 0.5)':
        ({'answer_weight': 0.5, 'min_conf': 0.3, 'answer_agree': True,
          'merge_support': 0.5, 'merge_agree': True}, {}),
    "+ sentence merges need the images' and the answers' support (merge_support=0.5, merge_agree)":
        ({'merge_support': 0.5, 'merge_agree': True}, {}),
    'trained head (not class means)': ({'head': 'trained'}, {}),
    'class means only (no nearest image, nearest=0)': ({'nearest': 0.0}, {}),
}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('root', nargs='?', default='../shared/data/testbed')
    ap.add_argument('--datasets', default='flower102,bird200,car196')
    ap.add_argument('--seeds', type=int, default=1)
    ap.add_argument('--out', default='bench/results/near_ablation.json')
    a = ap.parse_args()
    enc, rows, t0 = sentence_encoder(), [], time.time()
    for ds in a.datasets.split(','):
        for name, (chg, kw) in VARIANTS.items():
            r = bench_testbed(Path(a.root)/ds, seeds=a.seeds, cfg=replace(NearConfig(), **chg), encode=enc, **kw)
            t, h = r['transductive'], r['heldout']
            row = {'dataset': ds, 'variant': name,
                   **{f'{p}_near_{k}': r[p]['near'][k] for p in ('transductive', 'heldout') for k in ('cacc', 'sacc')},
                   'heldout_near_acc_mapped': h['near']['acc_mapped'], 'heldout_ce_raw_acc_mapped': h['ce_raw']['acc_mapped'],
                   'transductive_changes': t['near']['changes'], 'heldout_changes': h['near']['changes'],
                   'trans_top1_cacc': t['mllm_top1']['cacc'], 'trans_top1_sacc': t['mllm_top1']['sacc'],
                   'heldout_ce_raw_cacc': h['ce_raw']['cacc'], 'heldout_ce_raw_sacc': h['ce_raw']['sacc']}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'sentence_model': enc.model_name, 'seeds': a.seeds, 'seconds': round(time.time() - t0),
                                       'config': asdict(NearConfig()),
                                       'embeddings': 'precomputed OpenAI CLIP ViT-B/16 (test bed)', 'rows': rows}, indent=1))

if __name__ == '__main__': sys.exit(main())
