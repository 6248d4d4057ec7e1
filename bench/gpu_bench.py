"""GPU benchmark of the image path (issue 15). One command on a machine with a GPU:

    .venv/bin/python bench/gpu_bench.py                 # ViT-B-16, 4,000 distinct JPEGs, batch 256, fp16 + bf16 + fp32
    .venv/bin/python bench/gpu_bench.py --quick         # a smaller run (CPU: a few minutes on 2 cores)

What it measures, in images/s unless said otherwise (random weights: speed does not depend on them):
1. `Backbone.embed_images` (files on disk -> normalised vectors, cache off) with each decoder ('gpu': batched
   torchvision decode_jpeg on the model's device; 'pil': Pillow with JPEG draft mode in DataLoader workers) and
   each precision;
2. the compute limit: bare `encode_image` on a random batch already on the device, in the input dtype;
3. a bare nvjpeg loop: read bytes, batched decode_jpeg on the device, tensor resize/crop/normalise, encode
   (on a CPU the same loop decodes with torchvision on the CPU);
4. a bare Pillow loop: decode with draft mode in a process pool, then encode;
5. the cache: a first run into an empty cache, then a second run over the same files;
6. fine-tuning, modes 2 (last blocks over cached trunk activations) and 3 (full), seconds per epoch.
Results go to bench/results/gpu_bench.json (or --out) with the machine's description; a table on stdout.
The JPEGs are made from ../shared/data/pool/cub50-test (500 photographs, short side 256 px): copies re-encoded
with a small shift so that every file is distinct (distinct content hashes, as in a real corpus).
"""
import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import numpy as np
import psutil
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT.parent/'shared'/'data'/'pool'/'cub50-test'


def make_jpegs(src:Path, n:int, out:Path) -> list:
    "`n` distinct JPEGs from the photographs under `src`: copy k of a photo is shifted by k pixels and re-encoded."
    photos = sorted(p for p in src.rglob('*') if p.suffix.lower() in ('.jpg', '.jpeg'))
    if not photos: raise SystemExit(f'no JPEG photographs under {src}: pass --images FOLDER')
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        p, k = photos[i % len(photos)], i // len(photos)
        f = out/f'{i:06d}.jpg'
        if not f.exists():
            im = Image.open(p).convert('RGB')
            if k: im = im.crop((k % 7, k // 7 % 7, im.width, im.height))
            im.save(f, quality=90)
        files.append(f)
    return files


def sync(device:str):
    if device.startswith('cuda'): torch.cuda.synchronize()


def rate(n:int, fn, device:str, repeats:int=1) -> float:
    "Images per second of fn() over n images: the best of `repeats` runs."
    best = float('inf')
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return round(n / best, 1)


def bare_encode(bb, n:int, batch:int) -> float:
    "The compute limit: encode_image on a random batch already on the device, in the input dtype."
    from near_nb.embed import input_dtype
    size = bb.preprocess_cfg['size']
    x = torch.randn(batch, 3, *size, device=bb.device, dtype=input_dtype(bb.model.visual))
    def run():
        with torch.inference_mode():
            for _ in range(max(1, n // batch)): bb.model.encode_image(x)
    run()  # warm-up
    return rate(max(1, n // batch) * batch, run, bb.device)


def bare_nvjpeg(bb, files:list, batch:int) -> float:
    "Read bytes, batched decode_jpeg on the device, tensor preprocessing, encode: no DataLoader, no hashing."
    from near_nb.embed import decode_jpegs, tensor_preprocess
    dev = bb.device if bb.device.startswith('cuda') else 'cpu'
    def run():
        for i in range(0, len(files), batch):
            datas = [torch.frombuffer(bytearray(Path(f).read_bytes()), dtype=torch.uint8) for f in files[i:i + batch]]
            x = tensor_preprocess(decode_jpegs(datas, device=dev), bb.preprocess_cfg)
            bb.encode_batch(x)
    return rate(len(files), run, bb.device)


def _pil_pixels(args):
    "One image through Pillow with draft mode and open_clip's preprocessing (a process-pool task)."
    f, cfg = args
    from near_nb.data import load_image
    from open_clip.transform import PreprocessCfg, image_transform_v2
    tf = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    return tf(load_image(f, draft=max(cfg['size']))).numpy()


def bare_pil_pool(bb, files:list, batch:int, processes:int) -> float:
    "Pillow with draft mode in a process pool, then encode, batch by batch."
    cfg = bb.preprocess_cfg
    spawn = multiprocessing.get_context('spawn')  # fork after torch's thread pools start can deadlock the children
    with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
        list(pool.map(_pil_pixels, [(files[0], cfg)] * processes))  # warm-up: imports in every process
        def run():
            for i in range(0, len(files), batch):
                xs = list(pool.map(_pil_pixels, [(f, cfg) for f in files[i:i + batch]], chunksize=8))
                bb.encode_batch(torch.from_numpy(np.stack(xs)))
        return rate(len(files), run, bb.device)


def tune_epochs(bb, files:list, n_top:int|None, batch:int) -> dict:
    "Seconds per epoch of `fit_near_tower` (mode 2 with n_top blocks, or mode 3): two runs, 1 and 3 epochs."
    try: from near_nb.tune import fit_near_tower
    except ImportError: from near_nb.near import near_fit_tower as fit_near_tower  # before the tune module
    from near_nb.near import NearConfig
    rng = np.random.default_rng(0)
    names = [f'name {k}' for k in range(20)]
    own = [[int(c)] for c in rng.integers(0, len(names), len(files))]
    times = {}
    for epochs in (1, 3):
        cfg = NearConfig(epochs=epochs, warmup=0, batch_size=batch, lr=1e-5)
        sync(bb.device)
        t = time.perf_counter()
        fit_near_tower(bb, files, own, names, cfg=cfg, n_top=n_top)
        sync(bb.device)
        times[epochs] = time.perf_counter() - t
    return {'images': len(files), 'seconds_per_epoch': round((times[3] - times[1]) / 2, 2),
            'images_per_s_per_epoch': round(len(files) * 2 / max(times[3] - times[1], 1e-9), 1),
            'setup_s': round(times[1] - (times[3] - times[1]) / 2, 2)}


def machine(device:str) -> str:
    cpu = f'{platform.machine()}, {psutil.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB RAM'
    gpu = ''
    if device.startswith('cuda'):
        p = torch.cuda.get_device_properties(0)
        gpu = f'{p.name} ({round(p.total_memory / 2**30)} GiB), CUDA {torch.version.cuda}; '
    return f'{gpu}{cpu}; Python {platform.python_version()}, torch {torch.__version__}'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--images', default=str(POOL), help='a folder of JPEG photographs to make the test files from')
    ap.add_argument('--n', type=int, default=None, help='distinct JPEGs (default 4000; --quick: 256 on GPU, 64 on CPU)')
    ap.add_argument('--model', default='ViT-B-16')
    ap.add_argument('--batch-size', type=int, default=None, help='default 256 on GPU, 32 on CPU')
    ap.add_argument('--device', default=None, help='default: cuda if there is one, else cpu')
    ap.add_argument('--precisions', default=None, help='comma-separated; default fp16,bf16,fp32 on GPU, fp32,bf16 on CPU')
    ap.add_argument('--workers', type=int, default=None, help='DataLoader workers; default: cores - 1 (at most 15)')
    ap.add_argument('--tune-images', type=int, default=None, help='images for modes 2/3 (default 1024 GPU, 32 CPU)')
    ap.add_argument('--quick', action='store_true', help='a small run (a few minutes on a CPU)')
    ap.add_argument('--out', default=str(ROOT/'bench'/'results'/'gpu_bench.json'))
    a = ap.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ['NEAR_NB_HOME'] = tempfile.mkdtemp(prefix='near_gpu_bench_')
    from near_nb.embed import Backbone
    device = a.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    gpu = device.startswith('cuda')
    n = a.n or (4000 if not a.quick else 256 if gpu else 64)
    batch = a.batch_size or (256 if gpu else 32)
    workers = a.workers if a.workers is not None else min(15, max(1, (os.cpu_count() or 2) - 1))
    precisions = (a.precisions or ('fp16,bf16,fp32' if gpu else 'fp32,bf16')).split(',')
    n_tune = a.tune_images or (1024 if gpu else 32)
    files = make_jpegs(Path(a.images), n, Path(tempfile.gettempdir())/f'near_gpu_bench_jpegs_{n}')
    r = {'device': device, 'machine': machine(device), 'model': f'{a.model} (random weights)', 'images': n,
         'image_source': f'{n} distinct JPEGs made from {a.images}', 'batch_size': batch, 'workers': workers,
         'torch_threads': torch.get_num_threads(), 'date': time.strftime('%Y-%m-%d'), 'embed_images_img_s': {},
         'bare_encode_image_img_s': {}}
    kw = dict(cache=False, batch_size=batch, num_workers=workers, progress=False)
    for prec in precisions:
        bb = Backbone(a.model, None, random_init=True, device=device, precision=prec).load()
        bb.embed_images(files[:batch], decode='pil', **kw)  # warm-up: kernels, allocator
        r['bare_encode_image_img_s'][prec] = bare_encode(bb, n, batch)
        for dec in ('gpu', 'pil'):
            r['embed_images_img_s'][f'{prec}/{dec}'] = rate(n, lambda: bb.embed_images(files, decode=dec, **kw), device)
            print(f'{prec}/{dec}: {r["embed_images_img_s"][f"{prec}/{dec}"]} img/s', flush=True)
    main_prec = precisions[0]
    bb = Backbone(a.model, None, random_init=True, device=device, precision=main_prec).load()
    r['bare_nvjpeg_loop_img_s'] = bare_nvjpeg(bb, files, batch)
    r['bare_pil_pool_img_s'] = bare_pil_pool(bb, files, batch, workers)
    r['bare_loops_precision'] = main_prec
    db = Path(tempfile.mkdtemp())/'cache.sqlite'
    t = time.perf_counter(); bb.embed_images(files, cache=db, batch_size=batch, num_workers=workers, progress=False); first = time.perf_counter() - t
    fresh = Backbone(a.model, None, random_init=True, device=device, precision=main_prec)
    t = time.perf_counter(); e2 = fresh.embed_images(files, cache=db, batch_size=batch, num_workers=workers, progress=False); second = time.perf_counter() - t
    assert e2.n_cached == n and not fresh.loaded
    r['cache'] = {'first_run_s': round(first, 2), 'second_run_s': round(second, 3), 'speedup': round(first / second, 1)}
    tune_bb = Backbone(a.model, None, random_init=True, device=device, precision='fp32')
    r['tune'] = {'precision': 'fp32 weights' + (', autocast' if gpu else ''), 'batch_size': min(batch, 64),
                 'mode2_top2': tune_epochs(tune_bb, files[:n_tune], 2, min(batch, 64)),
                 'mode3_full': tune_epochs(tune_bb, files[:n_tune], None, min(batch, 64))}
    best = max(r['embed_images_img_s'].values())
    r['whole_path_over_bare_nvjpeg'] = round(best / r['bare_nvjpeg_loop_img_s'], 3)
    r['whole_path_over_compute_limit'] = round(best / max(r['bare_encode_image_img_s'].values()), 3)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=2))
    print(json.dumps(r, indent=2))
    rows = [f"| `embed_images` {k} | {v} |" for k, v in r['embed_images_img_s'].items()]
    rows += [f"| bare `encode_image` {k} (compute limit) | {v} |" for k, v in r['bare_encode_image_img_s'].items()]
    rows += [f"| bare loop: decode_jpeg batched + tensor preprocess + encode ({main_prec}) | {r['bare_nvjpeg_loop_img_s']} |",
             f"| bare loop: Pillow draft in {workers} processes + encode ({main_prec}) | {r['bare_pil_pool_img_s']} |",
             f"| cache: second run over the same files | {r['cache']['speedup']}x faster ({r['cache']['second_run_s']} s) |",
             f"| mode 2 (top 2 blocks) per epoch, {n_tune} images | {r['tune']['mode2_top2']['images_per_s_per_epoch']} |",
             f"| mode 3 (full) per epoch, {n_tune} images | {r['tune']['mode3_full']['images_per_s_per_epoch']} |"]
    print(f"\n{r['machine']}\n\n| what | images/s |\n|---|---|\n" + '\n'.join(rows))


if __name__ == '__main__': main()
