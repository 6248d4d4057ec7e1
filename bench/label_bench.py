"""Labeling throughput (issue: MLLM labeling). Run on demand: `.venv/bin/python bench/label_bench.py`.

`near_nb.testing.FakeChatServer` (asyncio) in its own process answers every chat completion after a fixed latency
(50 ms); `label_images` with the `OpenAILabeler` (openai SDK, real HTTP on 127.0.0.1) labels 1,000 small
generated 64x64 images at concurrency 32, three times (median reported, each run listed). Reported: requests/s against the ideal concurrency / latency, and the
cost of the SQLite store per answer measured on its own. Results go to bench/results/label.json.
"""
import argparse, json, multiprocessing as mp, os, platform, tempfile, time
from pathlib import Path
import numpy as np, psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

def serve(latency, q):
    from near_nb.testing import FakeChatServer
    srv = FakeChatServer(latency=latency).start()
    q.put(srv.url)
    while True: time.sleep(3600)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--images', type=int, default=1000)
    ap.add_argument('--concurrency', type=int, default=32)
    ap.add_argument('--latency', type=float, default=0.05)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--out', default=str(ROOT/'bench'/'results'/'label.json'))
    a = ap.parse_args()
    os.environ['NEAR_NB_HOME'] = tmp = tempfile.mkdtemp(prefix='near_label_bench_')
    from near_nb.mllm import OpenAILabeler, LabelStore, label_images
    d = Path(tmp)/'imgs'
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(a.images): Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d/f'{i:05d}.png')
    q = mp.Queue()
    p = mp.Process(target=serve, args=(a.latency, q), daemon=True)
    p.start()
    url = q.get(timeout=30)
    try:
        lab = OpenAILabeler('fake-vlm', base_url=url, api_key='bench', timeout=30)
        label_images(sorted(d.glob('*.png'))[:64], lab, Path(tmp)/'warm.sqlite', concurrency=a.concurrency, progress=False)  # warm-up
        times = []
        for k in range(a.repeats):  # each run into a fresh store: every image is asked about
            t = time.perf_counter()
            run = label_images(sorted(d.glob('*.png')), lab, Path(tmp)/f'labels{k}.sqlite', concurrency=a.concurrency, progress=False)
            times.append(time.perf_counter() - t)
            assert run.done == a.images and not run.failed, run.summary()
    finally: p.terminate()
    dt = float(np.median(times))
    # the store alone: the same record() call the run makes, per answer
    st = LabelStore(Path(tmp)/'store_only.sqlite')
    resp = 'The object in the image is a **Specimen abc123** (*Fakea d4e5*).'
    t = time.perf_counter()
    for i in range(2000): st.record(f'{i:064x}', 'fake-vlm', 'p', 0, path=f'/x/{i}.png', prompt='prompt', response=resp, prompt_tokens=85, completion_tokens=10)
    store_ms = (time.perf_counter() - t) / 2000 * 1000
    ideal = a.concurrency / a.latency
    r = {'images': a.images, 'concurrency': a.concurrency, 'latency_s': a.latency, 'seconds_median': round(dt, 2),
         'ratio_each_run': [round(a.images / x / ideal, 3) for x in times],
         'requests_per_s_median': round(a.images / dt, 1), 'ideal_requests_per_s': round(ideal, 1), 'ratio_to_ideal': round(a.images / dt / ideal, 3),
         'store_ms_per_answer': round(store_ms, 3),
         'machine': f'{platform.machine()}, {psutil.cpu_count()} cores, Python {platform.python_version()}', 'date': time.strftime('%Y-%m-%d')}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=2))
    print(json.dumps(r, indent=2))

if __name__ == '__main__': main()
