"""Embedding benchmarks (issue: foundation). Run on demand: `.venv/bin/python bench/embed_bench.py`.

1. Throughput of the whole path (files on disk -> normalised vectors, `Backbone.embed_images`, cache off)
   against bare open_clip `encode_image` on the same images already decoded and preprocessed, same model
   (ViT-B-32, random weights: speed does not depend on the weights), same torch threads.
2. Cache: a first embedding run into an empty cache, then a second run over the same images.
3. Peak memory (RSS of the process and its DataLoader workers) while embedding the images.
Results go to bench/results/embed.json and a markdown table on stdout.
"""
import argparse, json, os, platform, tempfile, threading, time
from pathlib import Path
import psutil, torch

ROOT = Path(__file__).resolve().parents[1]

def _mem(p):
    "(PSS, RSS) of one process; PSS counts the pages it shares with its forked workers once in all. 0s if it is gone."
    try:
        full = p.memory_full_info()
        return getattr(full, 'pss', full.rss), full.rss
    except psutil.Error: return 0, 0

def peak_memory(fn):
    "Run fn() while sampling the memory of this process and its children (PSS; RSS too); return (result, peak pss, peak rss)."
    me, peak, peak_rss, stop = psutil.Process(), [0], [0], threading.Event()
    def sample():
        while not stop.is_set():
            m = [_mem(p) for p in [me] + me.children(recursive=True)]
            peak[0] = max(peak[0], sum(x for x, _ in m))
            peak_rss[0] = max(peak_rss[0], sum(x for _, x in m))
            time.sleep(0.02)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try: out = fn()
    finally:
        stop.set()
        t.join()
    return out, peak[0], peak_rss[0]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--images', default=str(ROOT.parent/'shared'/'data'/'pool'/'cub50-test'/'manifest.csv'))
    ap.add_argument('--model', default='ViT-B-32')
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--workers', type=int, default=None)
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--out', default=str(ROOT/'bench'/'results'/'embed.json'))
    a = ap.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ['NEAR_NB_HOME'] = tempfile.mkdtemp(prefix='near_bench_')
    from near_nb.data import ImageSet, load_image
    from near_nb.embed import Backbone
    iset = ImageSet.from_manifest(a.images) if a.images.endswith('.csv') else ImageSet.from_folder(a.images)
    n = len(iset)
    bb = Backbone(a.model, None, random_init=True).load()

    # peak memory of a whole embedding run (model already loaded, as in any run), measured first
    e, peak, peak_rss = peak_memory(lambda: bb.embed_images(iset, cache=False, batch_size=a.batch_size, num_workers=a.workers, progress=False))
    assert e.valid.all(), e.errors

    # bare encode_image on the already-decoded, preprocessed batch
    x = torch.stack([bb.preprocess(load_image(f)) for f in iset.files])
    def bare():
        with torch.inference_mode():
            for i in range(0, n, a.batch_size):
                f = bb.model.encode_image(x[i:i+a.batch_size])
                torch.nn.functional.normalize(f, dim=-1)
    def full(): bb.embed_images(iset, cache=False, batch_size=a.batch_size, num_workers=a.workers, progress=False)
    bare_t, full_t = [], []
    for _ in range(a.repeats):  # interleaved, best of each
        t = time.perf_counter()
        bare()
        bare_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        full()
        full_t.append(time.perf_counter() - t)

    # the cache: first run into an empty cache, second run over the same images (a fresh Backbone: no weights loaded)
    db = Path(tempfile.mkdtemp())/'cache.sqlite'
    t = time.perf_counter()
    bb.embed_images(iset, cache=db, batch_size=a.batch_size, num_workers=a.workers, progress=False)
    first = time.perf_counter() - t
    iset2 = ImageSet(iset.files)  # no hashes remembered: the second run hashes every file again
    t = time.perf_counter()
    e2 = Backbone(a.model, None, random_init=True).embed_images(iset2, cache=db, progress=False)
    second = time.perf_counter() - t
    assert e2.n_cached == n and e2.n_computed == 0

    r = {'images': n, 'image_source': a.images, 'model': f'{a.model} (random weights)', 'batch_size': a.batch_size,
         'workers': a.workers if a.workers is not None else 'default', 'torch_threads': torch.get_num_threads(),
         'bare_encode_image_img_s': round(n / min(bare_t), 2), 'full_path_img_s': round(n / min(full_t), 2),
         'full_over_bare': round(min(bare_t) / min(full_t), 3),
         'cache_first_run_s': round(first, 2), 'cache_second_run_s': round(second, 3), 'cache_speedup': round(first / second, 1),
         'peak_memory_gb': round(peak / 2**30, 2), 'peak_memory_measure': 'PSS of the process and its DataLoader workers',
         'peak_rss_sum_gb': round(peak_rss / 2**30, 2),
         'machine': f'{platform.machine()}, {psutil.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB, '
                    f'Python {platform.python_version()}, torch {torch.__version__}',
         'date': time.strftime('%Y-%m-%d')}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=2))
    print(json.dumps(r, indent=2))
    print(f"\n| measure | value | target |\n|---|---|---|\n"
          f"| bare open_clip encode_image | {r['bare_encode_image_img_s']} img/s | |\n"
          f"| full path (files -> vectors) | {r['full_path_img_s']} img/s | |\n"
          f"| full / bare | {r['full_over_bare']} | >= 0.8 |\n"
          f"| cache: first run / second run | {r['cache_first_run_s']} s / {r['cache_second_run_s']} s ({r['cache_speedup']}x) | >= 20x |\n"
          f"| peak memory embedding {n} images (PSS, process + workers) | {r['peak_memory_gb']} GB | < 2 GB |")

if __name__ == '__main__': main()
