"""Explorer responsiveness at scale: map-figure build time and payload size at 1k, 5k and 10k points, the layout
(PCA; t-SNE up to 5k), the cluster table, the FigureWidget with its widgets, a recolour (switching the names the
map is coloured by), a name search (highlighting its points) and the self-contained page of `map_html`.

    python bench/explore_bench.py [--out bench/results/explore.json]

Synthetic data: random 512-d unit vectors in 500 clusters, 500 names, answers of ~300 characters, no thumbnails
(those load per hover or per opened cluster, 48 at most, not with the map)."""
import argparse, json, os, time
from pathlib import Path
import numpy as np
from near_nb.explore import LabelView, layout_2d, map_figure, map_html, cluster_table, Explorer

def data(n, names=500, d=512, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.integers(names, size=n)
    C = rng.normal(size=(names, d))
    X = C[c] + rng.normal(size=(n, d)) * 0.8
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    nm = [f'Species number {j}' for j in c]
    ref = [f'Species number {j if rng.random() > 0.2 else (j + 1) % names}' for j in c]
    ans = [f'The bird in the image is a {x}, recognisable by its plumage. ' * 5 for x in nm]
    cand = [[(r, 0.7), (m, 0.3)] for r, m in zip(ref, nm)]
    return LabelView([f'img{i}' for i in range(n)], nm, ans, None, X.astype(np.float32), ref, rng.random(n).astype(np.float32),
                     rng.random(n) > 0.1, cand, None)

def timed(f):
    t = time.perf_counter()
    r = f()
    return r, round(time.perf_counter() - t, 3)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='bench/results/explore.json')
    a = ap.parse_args()
    rows = []
    for n in (1000, 5000, 10000):
        v = data(n)
        (xy, how), t_pca = timed(lambda: layout_2d(v.emb, 'pca'))
        t_tsne = timed(lambda: layout_2d(v.emb, 'tsne'))[1] if n <= 5000 else None
        fig, t_fig = timed(lambda: map_figure(v, xy, 'refined'))
        payload, t_json = timed(lambda: fig.to_json())
        _, t_tab = timed(lambda: cluster_table(v, 'refined'))
        ex, t_ex = timed(lambda: Explorer(v, xy))
        _, t_col = timed(lambda: ex.colour_by('mllm'))
        _, t_find = timed(lambda: ex.find('number 12'))
        page, t_page = timed(lambda: map_html(v, xy, 'refined'))
        rows.append({'points': n, 'names': 500, 'layout_pca_s': t_pca, 'layout_tsne_s': t_tsne, 'figure_build_s': t_fig,
                     'to_json_s': t_json, 'payload_mb': round(len(payload.encode()) / 1e6, 2), 'cluster_table_s': t_tab,
                     'explorer_build_s': t_ex, 'recolour_s': t_col, 'find_s': t_find, 'page_s': t_page,
                     'page_mb': round(len(page.encode()) / 1e6, 2), 'map_traces': len(fig.data)})
        print(json.dumps(rows[-1]), flush=True)
    r = {'cores': os.cpu_count(), 'data': 'synthetic (see the docstring)', 'rows': rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=1))

if __name__ == '__main__': main()
