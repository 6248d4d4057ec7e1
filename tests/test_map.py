"""The standalone map of any run (`pipeline.write_run_map`, what `near map` writes), opened in headless Chromium: on
a run of our own (real photos of the shipped sample, a local chat server as the MLLM, a tiny random-weight CLIP),
and on a table of 300-500 names (NeaR's refined names for 400 images of the real car196 discovery set, real CLIP
embeddings). Every
image is a point; the legend's coloured names are the 20 largest, ties broken by mean confidence, not the alphabet;
the hover card shows the confidence and the MLLM's answer.

Needs `playwright` and Debian's `chromium`; the browser checks skip, saying why, when one is missing."""
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest
from conftest import CHROMIUM, launch_chromium
from near_nb import pipeline
from near_nb.data import sample
from near_nb.embed import Backbone
from near_nb.explore import name_key
from near_nb.mllm import OpenAILabeler
from near_nb.names import answer_contrasts, answers_vocabulary
from near_nb.near import NearConfig, fit_near_head
from near_nb.testing import FakeChatServer, register_tiny_clip

CARS = Path('/work/shared/data/testbed/car196')
NAMES = ('Rose', 'Tulip', 'Daisy')
N = 400 # car196 images on the map

@pytest.fixture(scope='module')
def own_run(tmp_path_factory):
    "A run of 12 real photos (8 labelled by the local chat server, 4 named by the classifier)."
    photos, out = tmp_path_factory.mktemp('photos'), tmp_path_factory.mktemp('run')/'job'
    for f in sample().images.files[5::25][:12]: shutil.copy(f, photos/f.name)
    bb = Backbone(register_tiny_clip(folder=tmp_path_factory.mktemp('tiny')), None, random_init=True)
    answer = lambda fp: f'This is a **{NAMES[int(fp[:8], 16) % 3]}** (answer {fp[:6]}).'
    with FakeChatServer(answer=answer) as srv:
        pipeline.run_job(photos, out, labeler=OpenAILabeler('fake-vlm', base_url=srv.url), sample=8, backbone=bb,
                         config=NearConfig(epochs=5), progress=False)
    return out

@pytest.fixture(scope='module')
def many_names(tmp_path_factory):
    "NeaR's refined names (with confidence and the MLLM's answers) on the car196 discovery set, and a `near embed` .npz."
    if not (CARS/'labels.csv').exists(): pytest.skip(f'no test-bed data at {CARS}')
    lab = pd.read_csv(CARS/'labels.csv', keep_default_na=False).head(N)  # fewer images: a quicker layout
    emb, ids, texts = np.load(CARS/'clip_vit_b16.npz')['emb'][:N], lab.image_id.tolist(), lab.response.tolist()
    voc, own = answers_vocabulary(ids, [json.loads(n) for n in lab.names], texts, None, emb=emb)  # stated synonyms
    clf, res = fit_near_head(emb, own, voc.names, NearConfig(epochs=10), contrasts=answer_contrasts(voc, texts))
    table = pipeline.refined_table(ids, [''] * len(ids), voc, own, res=res, answers=texts)
    d = tmp_path_factory.mktemp('cars')
    np.savez(d/'emb.npz', emb=emb, path=np.array(ids), sha256=np.array([''] * len(ids)), model_id='ViT-B-16 openai')
    pipeline.write_run_map(table, d/'map.html', embeddings=d/'emb.npz', title='car196 discovery set')
    return table, d/'map.html'

def _largest(table:pd.DataFrame, by_confidence:bool=True) -> list:
    "The 20 largest names (their keys: case and plural variants are one name), ties by mean confidence or the alphabet."
    keys = table.near.map(name_key)
    size, conf = keys.value_counts(), table.confidence.groupby(keys).mean()
    first = pd.Series(np.arange(len(keys))).groupby(keys.to_numpy()).min()
    tie = (lambda k: (-conf[k], first[k])) if by_confidence else (lambda k: (k,))
    return sorted(size.index, key=lambda k: (-size[k], *tie(k)))[:20]

def _page_data(html:str) -> dict: return json.loads(html.split('id="near-data">')[1].split('</script>')[0])

def test_map_of_own_run(own_run):
    html = (own_run/'near_map.html').read_text()
    assert len(_page_data(html)['labels']) == 12 and 'Plotly.newPlot' in html and '<script src=' not in html  # offline
    again = pipeline.write_run_map(own_run/'refined_labels.csv', own_run/'refined_map.html')  # embeddings.npz beside
    data = _page_data(again.read_text())
    assert len(data['labels']) == 8 and set(data['labels']) <= set(NAMES)
    assert data['thumbs'][0].startswith('data:image/jpeg')

def test_colours_go_to_the_largest_names(many_names):
    table, page = many_names
    assert 300 <= table.near.nunique() <= 500
    html = page.read_text()
    assert 'layout: ' in html and 'ties: the more confident first' in html
    want, alphabet = _largest(table), _largest(table, by_confidence=False)
    assert want != alphabet  # the tie-break decides something here
    data = _page_data(html)
    coloured = {name_key(n) for n, c in zip(data['labels'], data['found']) if c != '#444'}  # '#444': grey
    assert coloured == set(want)

def _open(page, path):
    page.goto(path.as_uri())
    page.wait_for_selector('#near-map .main-svg', timeout=60_000)
    return page.evaluate("""() => { const g = document.getElementById('near-map');
        return {points: g._fullData.reduce((s, t) => s + (t.x ? t.x.length : 0), 0),
                legend: [...g.querySelectorAll('.legend .traces .legendtext')].map(e => e.textContent),
                title: g.querySelector('.gtitle').textContent,
                hover: g.data[1].hovertext[0]}; }""")

@pytest.mark.skipif(not CHROMIUM, reason='no Chromium on this machine (Debian: apt-get install chromium)')
def test_maps_in_a_browser(own_run, many_names):
    pytest.importorskip('playwright', reason="python package 'playwright' is not installed")
    from playwright.sync_api import sync_playwright
    table, cars = many_names
    want = _largest(table)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            errors = []
            page.on('pageerror', lambda e: errors.append(str(e)))
            got = _open(page, cars)
            assert got['points'] == len(table) == N
            coloured = [t.rsplit(' (', 1) for t in got['legend'] if 'other names' not in t]
            assert {name_key(n) for n, _ in coloured} == set(want)   # the 20 largest, ties by mean confidence
            counts = [int(k.rstrip(')')) for _, k in coloured]
            assert counts == sorted(counts, reverse=True)            # largest first
            n_tail = table.near.nunique() - len(coloured)
            assert any(t.startswith(f'{n_tail} other names, grey') for t in got['legend']), got['legend']
            assert got['title'].startswith(f'car196 discovery set: {N} images, {table.near.nunique()} names')
            assert 'layout: t-SNE' in got['title'] and 'ties: the more confident first' in got['title']
            assert '% sure' in got['hover'] and 'MLLM: ' in got['hover']   # the confidence and the MLLM's name
            i = table.near.tolist().index(coloured[0][0])
            assert table.response[i][:25].split()[0] in got['hover']     # the start of its answer
            mine = _open(page, own_run/'near_map.html')
            assert mine['points'] == 12 and '% sure' in mine['hover']
            page.locator('#near-find').fill(NAMES[0].lower())
            assert page.locator('#near-found').inner_text().endswith('names')
            assert not errors, errors
        finally:
            browser.close()
