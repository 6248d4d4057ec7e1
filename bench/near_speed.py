"""Training-mode speed: mode 1 (head on cached features) at 600 images x ~500 names, and mode 2 (last N blocks over
cached trunk activations) against mode 3 (full fine-tuning) per epoch on open_clip ViT-B-32 with random weights.

    python bench/near_speed.py [--out bench/results/near_speed.json]

Timing only: random features and random weights, so no accuracy is measured here."""
import argparse, json, os, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from near_nb.near import NearConfig, fit_near_head
from near_nb.tune import fit_near_tower
from near_nb.embed import Backbone

def mode1(n=600, names=500, d=512, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    own = [[int(rng.integers(names))] for _ in range(n)]
    for i in range(names): own[i % n] = [i]  # every name used at least once
    t = time.perf_counter()
    fit_near_head(X, own, [f'name {i}' for i in range(names)], NearConfig())
    return time.perf_counter() - t

def tower(n_top, files, epochs=2):
    bb = Backbone('ViT-B-32', pretrained=None, random_init=True)
    own = [[i % 8] for i in range(len(files))]
    cfg = NearConfig(k=3, epochs=epochs, batch_size=16, lr=1e-5, warmup=1)
    t = time.perf_counter()
    clf, res = fit_near_tower(bb, files, own, [f'n{i}' for i in range(8)], cfg=cfg, n_top=n_top)
    total = time.perf_counter() - t
    return total, [h['seconds'] for h in res.history]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='bench/results/near_speed.json')
    ap.add_argument('--images', type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    tmp = Path(os.environ.get('TMPDIR', '/tmp'))/'near_speed_imgs'
    tmp.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(a.images):
        f = tmp/f'{i}.png'
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(f)
        files.append(f)
    m1 = [mode1(seed=s) for s in range(3)]
    t2, e2 = tower(2, files)
    t3, e3 = tower(None, files)
    r = {'cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
         'mode1': {'images': 600, 'names': 500, 'epochs': NearConfig().epochs, 'seconds': [round(x, 2) for x in m1]},
         'mode2_vs_mode3': {'model': 'ViT-B-32 (random weights)', 'images': a.images, 'batch_size': 16, 'n_top': 2,
                            'mode2_epoch_s': [round(x, 2) for x in e2], 'mode3_epoch_s': [round(x, 2) for x in e3],
                            'mode2_total_s_incl_trunk_cache': round(t2, 1), 'mode3_total_s': round(t3, 1),
                            'speedup_per_epoch': round(float(np.median(e3) / np.median(e2)), 1)}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=1))
    print(json.dumps(r, indent=1))

if __name__ == '__main__': main()
