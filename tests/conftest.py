"Tests are offline and never touch the user's caches."
import os, shutil, signal, tempfile
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
if 'NEAR_NB_HOME' not in os.environ: os.environ['NEAR_NB_HOME'] = tempfile.mkdtemp(prefix='near_nb_test_')
# a suite started in the background (`cmd &`) inherits SIGINT ignored, and so would every process a test starts:
# a test that interrupts `near label` must see what Ctrl-C in a terminal does
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN: signal.signal(signal.SIGINT, signal.default_int_handler)

from pathlib import Path
import numpy as np, pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# the system Chromium the browser tests drive (Playwright's own browsers are never downloaded)
CHROMIUM = os.environ.get('NEAR_CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']

# The files that take longest, first. `bash dev.sh test` runs pytest with `--dist loadfile --no-loadscope-reorder`:
# pytest-xdist hands whole files to the workers in collection order, and starting the longest jobs first lets the
# workers finish together (longest-processing-time-first scheduling) instead of one worker taking the Ray cluster
# near the end while the other idles. Order from `--durations` on 2 cores; a file not listed keeps its place after.
LONGEST_FIRST = ('test_ray.py', 'test_browser.py', 'test_docs.py', 'test_label_e2e.py', 'test_cli.py',
                 'test_describe_e2e.py', 'test_hostile_files.py', 'test_hostile.py', 'test_near_e2e.py',
                 'test_embed_e2e.py', 'test_model_format.py', 'test_run_e2e.py')

def pytest_collection_modifyitems(config, items):
    "Put the files in `LONGEST_FIRST` first, in its order (a stable sort: tests keep their order within a file)."
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

def launch_chromium(playwright):
    "Start the system Chromium headless, or fail the test with the reason it did not start."
    from playwright.sync_api import Error as PlaywrightError
    try: return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    except PlaywrightError as e: pytest.fail(f'Chromium ({CHROMIUM}) did not start: {e}', pytrace=False)

@pytest.fixture
def photos(tmp_path):
    "A folder of small real-looking RGB photos (noise with structure), sorted names 00.jpg .. 11.jpg."
    rng = np.random.default_rng(0)
    d = tmp_path/'photos'
    d.mkdir()
    for i in range(12):
        a = (rng.random((60 + i, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(d/f'{i:02d}.jpg', quality=90)
    return d

def kill_when(proc, db, sql, at_least, sig, timeout=120):
    "Wait until `sql` (a COUNT) on the SQLite file `db` reaches `at_least` while `proc` runs, then send it `sig`."
    import sqlite3, subprocess, time
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if db.exists():
            try: n = sqlite3.connect(db, timeout=5).execute(sql).fetchone()[0]
            except sqlite3.OperationalError: n = 0
            if n >= at_least: break
        time.sleep(0.02)
    assert proc.poll() is None, 'the run finished before it could be killed'
    status = Path(f'/proc/{proc.pid}/status')  # the signals the process ignores and blocks, should it not stop
    lines = status.read_text().splitlines() if status.exists() else []
    masks = [l for l in lines if l.startswith(('SigBlk', 'SigIgn'))]
    proc.send_signal(sig)
    try: proc.wait(timeout=30)
    except subprocess.TimeoutExpired: raise AssertionError(f'{sig!r} did not stop the process; {masks}') from None
