"""NeaR ablation on test-bed datasets: each part of the trainer on/off and k, both protocols.

    python bench/near_ablation.py [TESTBED_ROOT] [--seeds 1] [--out bench/results/near_ablation.json]

Writes one row per (dataset, variant) with transductive and held-out cACC/sACC (means over seeds).
Embeddings are the test bed's precomputed OpenAI CLIP ViT-B/16 vectors; answers are Qwen2.5-VL-72B's."""
import argparse, json, sys, time
from dataclasses import replace
from pathlib import Path
from near_nb.evaluate import bench_testbed
from near_nb.names import sentence_encoder
from near_nb.near import NearConfig

VARIANTS = {  # name -> (config changes, vocabulary similarity merge)
    'default': ({}, 0.9),
    'no neighbours (k=0)': ({'k': 0}, 0.9),
    'k=1': ({'k': 1}, 0.9), 'k=5': ({'k': 5}, 0.9), 'k=10': ({'k': 10}, 0.9),
    'neighbour weight 0.5 (not auto)': ({'neighbour_weight': 0.5}, 0.9),
    'no PRODEN': ({'proden': False}, 0.9),
    '+ GMM, consensus refinement': ({'gmm': True}, 0.9),
    '+ GMM, relaxed refinement': ({'gmm': True, 'refine': 'relax'}, 0.9),
    'no pruning': ({'prune': False}, 0.9),
    'trained head (not refined-label prototypes)': ({'head': 'trained'}, 0.9),
    'no sentence merge (stated synonyms only)': ({}, 0.0),
}

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('root', nargs='?', default='../shared/data/testbed')
    ap.add_argument('--datasets', default='flower102,bird200,car196'); ap.add_argument('--seeds', type=int, default=1)
    ap.add_argument('--out', default='bench/results/near_ablation.json'); a = ap.parse_args()
    enc, rows, t0 = sentence_encoder(), [], time.time()
    for ds in a.datasets.split(','):
        for name, (chg, sim) in VARIANTS.items():
            r = bench_testbed(Path(a.root)/ds, seeds=a.seeds, cfg=replace(NearConfig(), **chg), encode=enc, similar=sim)
            row = {'dataset': ds, 'variant': name, **{f'{p}_{m}_{k}': r[p][m][k] for p in ('transductive', 'heldout')
                                                      for m in ('near',) for k in ('cacc', 'sacc')},
                   'trans_top1_cacc': r['transductive']['mllm_top1']['cacc'], 'heldout_ce_raw_cacc': r['heldout']['ce_raw']['cacc'],
                   'heldout_ce_raw_sacc': r['heldout']['ce_raw']['sacc']}
            rows.append(row); print(json.dumps(row), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'sentence_model': enc.model_name, 'seeds': a.seeds, 'seconds': round(time.time() - t0),
                                       'embeddings': 'precomputed OpenAI CLIP ViT-B/16 (test bed)', 'rows': rows}, indent=1))

if __name__ == '__main__': sys.exit(main())
