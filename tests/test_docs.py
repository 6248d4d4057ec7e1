"""The documentation site: `docs/build.py` builds it (here with tutorial 1 only, with the outputs stored in it;
`bash dev.sh docs` builds them all), then every page is checked for broken internal links and Python tracebacks,
the API pages for classes with their methods and a parameter table per entry, and the home page, two API pages and
tutorial 1 are opened in headless Chromium (the plotly map of tutorial 1 rendered, no signature cut off at the right
edge; screenshots kept in artifacts/).

Needs the docs extra (`pip install -e ".[dev,docs]"`), `playwright` and Debian's `chromium`; skipped, saying why,
when one is missing. The build time is written to artifacts/docs_build_seconds.txt."""
import os, subprocess, sys, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from conftest import CHROMIUM, ROOT, launch_chromium

ART = Path(os.environ.get('NEAR_TEST_ARTIFACTS', ROOT/'artifacts'))

def _missing() -> str|None:
    for m in ('sphinx', 'myst_nb', 'pydata_sphinx_theme'):
        try: __import__(m)
        except ImportError: return f'the docs extra is not installed ({m!r} missing: pip install -e ".[dev,docs]")'
    try: __import__('playwright')
    except ImportError: return "python package 'playwright' is not installed (pip install -e \".[dev]\")"
    if not CHROMIUM: return 'no Chromium on this machine (Debian: apt-get install chromium)'
    return None

class _Page(HTMLParser):
    "The links and element ids of one HTML page."
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        for k in ('href', 'src'):
            if a.get(k) and tag in ('a', 'link', 'script', 'img'): self.links.append(a[k])

def _parse(path:Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding='utf-8', errors='replace'))
    return p

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    why = _missing()
    if why: pytest.skip(f'docs test skipped: {why}')
    out = tmp_path_factory.mktemp('docs')
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'NEAR_NB_HOME': str(out/'home')}
    t0 = time.perf_counter()
    # tutorial 1 only, with its stored outputs, to keep the suite fast: nbdev_test runs every tutorial in the same suite
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--out', str(out), '--tutorials', '01_sample'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, f'docs build failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}'
    ART.mkdir(parents=True, exist_ok=True)
    (ART/'docs_build_seconds.txt').write_text(f'{seconds:.1f}\n')
    return out/'html'

def test_every_page_links_and_runs(site):
    pages = sorted(p for p in site.rglob('*.html') if '_static' not in p.relative_to(site).parts)  # not the theme's templates
    names = {p.relative_to(site).as_posix() for p in pages}
    pages_in_repo = {'design.html', 'results.html', 'reliability.html', 'descriptions.html', 'gpu.html', 'about.html'}
    assert {'index.html', 'api/explore.html', 'tutorials/01_sample.html', *pages_in_repo} <= names, sorted(names)
    home = _parse(site/'index.html').links
    assert pages_in_repo - {'about.html'} <= {urlsplit(l).path for l in home}, home  # the README links to them
    parsed, broken = {p: _parse(p) for p in pages}, []
    for page, doc in parsed.items():
        text = page.read_text(encoding='utf-8', errors='replace')
        assert 'Traceback (most recent call last)' not in text and 'output traceback' not in text, f'a traceback on {page.name}'
        for link in doc.links:
            u = urlsplit(link)
            if u.scheme or link.startswith(('//', 'mailto:', 'javascript:', 'data:')): continue
            target = (page.parent/unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): broken.append(f'{page.relative_to(site)} -> {link}')
            elif u.fragment and target.suffix == '.html':
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(u.fragment) not in ids: broken.append(f'{page.relative_to(site)} -> {link} (no such anchor)')
    assert not broken, broken[:20]
    api = (site/'api'/'explore.html').read_text(encoding='utf-8')
    assert 'map_html' in api and 'thumbnails inlined' in api  # an export with the docment beside its parameter

def _cells(page, heading:str) -> list:
    "The parameter table under the heading `heading` of `page`, as rows of cell texts."
    sec = page.locator(f'section:has(> h3:has-text("{heading}")), section:has(> h4:has-text("{heading}"))').last
    return sec.locator('table').first.locator('tbody tr').evaluate_all(
        'rows => rows.map(r => [...r.querySelectorAll("td")].map(td => td.innerText.trim()))')

def test_api_pages(site):
    "Classes with their methods (class methods and @patch-ed ones too), a parameter table per entry, the front door."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            page.goto((site/'api'/'classifier.html').as_uri())
            for h in ('NearClassifier.predict', 'NearClassifier.save_pretrained', 'NearClassifier.from_pretrained',
                      'NearClassifier.load'):
                assert page.locator(f'h4:has-text("{h}")').count() == 1, h
            assert page.locator('h3:has-text("NearClassifier")').count() == 1
            rows = _cells(page, 'NearClassifier.from_pretrained')
            assert rows[1] == ['pretrained', 'str | None', 'None', 'local backbone checkpoint, instead of the saved tag or path'], rows
            assert [r[0] for r in rows] == ['src', 'pretrained', 'backbone', 'device', '**hub'], rows
            assert _cells(page, 'NearClassifier.predict')[1][:3] == ['top', 'int', '1']
            # no signature is cut off at the right edge: each code block fits its box
            wide = page.locator('div.highlight pre').evaluate_all('ps => ps.filter(p => p.scrollWidth > p.clientWidth + 1).length')
            assert wide == 0, f'{wide} signatures wider than the page'
            page.locator('h4:has-text("NearClassifier.from_pretrained")').scroll_into_view_if_needed()
            page.screenshot(path=str(ART/'docs_api_classifier.png'))
            page.goto((site/'api'/'embed.html').as_uri())
            assert page.locator('h4:has-text("EmbeddingCache.put")').count() == 1  # a method added by @patch
            assert _cells(page, 'Backbone.embed_images')[0][0] == 'images'
            page.goto((site/'api'/'index.html').as_uri())
            import near_nb
            names = page.locator('section:has(> h2:has-text("The front door")) table tbody tr td:first-child').all_inner_texts()
            assert names == [n for ns in near_nb.FRONT_DOOR.values() for n in ns], names
            page.locator('a:has-text("NearClassifier")').first.click()
            assert page.url.endswith('classifier.html#nearclassifier'), page.url
        finally:
            browser.close()

def test_pages_in_a_browser(site):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            errors = []
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.goto((site/'index.html').as_uri())
            assert page.locator('h1').first.inner_text().strip().startswith('near_nb')
            assert page.locator('nav a:has-text("Tutorial 1")').count() >= 1
            page.goto((site/'api'/'explore.html').as_uri())
            assert page.locator('h3:has-text("map_html")').count() == 1
            page.goto((site/'tutorials'/'01_sample.html').as_uri())
            frame = page.frame_locator('iframe.near-page').first
            frame.locator('.js-plotly-plot .main-svg').first.wait_for(timeout=60_000)
            points = frame.locator('#near-map').evaluate('g => g._fullData.reduce((s, t) => s + (t.x ? t.x.length : 0), 0)')
            assert points == 204, points  # every training image of the tutorial is on the map
            frame.locator('#near-find').fill('lily')
            assert frame.locator('#near-found').inner_text().endswith('names')
            page.locator('iframe.near-page').first.scroll_into_view_if_needed()
            page.screenshot(path=str(ART/'docs_tutorial1.png'))
            assert page.locator('.cell_output table').count() >= 1  # the tables the tutorial printed
            assert not errors, errors
        finally:
            browser.close()
