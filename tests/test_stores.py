"""A label store shared with another process, or handed over broken (issue 26): a busy store gives up in a
bounded, stated time and names the process that holds it; a broken one is one line naming it and what to
do."""
import os, sqlite3, subprocess, sys, time
import numpy as np, pytest
from PIL import Image
from near_nb.cli import main
from near_nb.core import NearError
from near_nb.mllm import LabelStore, OpenAILabeler, StoreBusy, label_images, lock_holders
from near_nb.testing import FakeChatServer

FIX = 'move it aside, or pass another store (--store)'
# a second process that begins a write transaction on the store and keeps it open
HOLD = ("import sqlite3, sys, time; con = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "con.execute('BEGIN IMMEDIATE'); print('holding', flush=True); time.sleep(60)")


@pytest.fixture
def held(tmp_path):
    "A label store (one answer in it) whose write lock another process holds, and that process."
    store = LabelStore(tmp_path/'s.sqlite')
    store.record('h0', 'fake-vlm', 'p', 0, path='x.jpg', prompt='q', response='A **Wren**.')
    p = subprocess.Popen([sys.executable, '-c', HOLD, str(store.path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'holding'
    yield store.path, p
    p.kill()
    p.wait()


@pytest.fixture
def imgs(tmp_path):
    d = tmp_path/'imgs'
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(d/f'{i}.png')
    return d


def test_a_busy_store_names_its_holder_and_gives_up_in_time(held, imgs):
    path, holder = held
    assert lock_holders(path) == [holder.pid]
    with FakeChatServer() as srv:
        t0 = time.time()
        with pytest.raises(StoreBusy) as e:
            label_images(sorted(imgs.iterdir()), OpenAILabeler('fake-vlm', base_url=srv.url),
                         LabelStore(path, wait=1.0), progress=False)
        waited = time.time() - t0
        assert srv.requests == 0                                    # nothing was asked (or paid) for
    msg = str(e.value)
    assert 1.0 <= waited < 4, waited         # the stated wait, once (not once per request in flight)
    assert '\n' not in msg and f'the label store {path} is busy' in msg, msg
    assert f'process {holder.pid} ({sys.executable} -c import sqlite3' in msg, msg
    assert 'not released in 1s' in msg and 'pass another store (--store)' in msg, msg
    holder.kill()
    holder.wait()
    assert lock_holders(path) == []
    with FakeChatServer() as srv:                                   # the lock gone, the same run completes
        run = label_images(sorted(imgs.iterdir()), OpenAILabeler('fake-vlm', base_url=srv.url),
                           LabelStore(path, wait=1.0), progress=False)
    assert (run.done, run.ok, len(LabelStore(path))) == (6, True, 7)


def test_near_label_on_a_busy_store_is_one_line(held, imgs, tmp_path, capsys, monkeypatch):
    path, holder = held
    monkeypatch.setattr(LabelStore.__init__, '__defaults__', (1.0,))  # the CLI's store waits 1 s, not 10
    with FakeChatServer() as srv:
        code = main(['label', str(imgs), '--mllm', 'openai:fake-vlm', '--base-url', srv.url,
                     '--store', str(path), '--out', str(tmp_path/'labels.csv'), '-q'])
        assert srv.requests == 0
    err = capsys.readouterr().err
    assert code == 1 and err.count('\n') == 1, err
    assert err.startswith(f'near label: error: the label store {path} is busy: process {holder.pid} ('), err


def test_broken_stores_say_what_to_do(tmp_path):
    (tmp_path/'junk.sqlite').write_bytes(b'not a database ' * 200)
    os.mkfifo(tmp_path/'pipe.sqlite')
    for name, sql in [('cache.sqlite', 'CREATE TABLE emb (model_id TEXT, vec BLOB)'),
                      ('old.sqlite', 'CREATE TABLE answers (sha256 TEXT, answer TEXT)'),
                      ('claims.sqlite', 'CREATE TABLE answers (x TEXT); CREATE TABLE claims (who TEXT)')]:
        con = sqlite3.connect(tmp_path/name)
        con.executescript(sql)
        con.close()
    cases = [('junk.sqlite', 'is not a SQLite file, or is corrupt'), ('pipe.sqlite', 'is a FIFO'),
             ('cache.sqlite', 'is not a label store (it holds the tables emb)'),
             ('old.sqlite', "has an unknown schema (table answers with columns ['sha256', 'answer']"),
             ('claims.sqlite', 'has an unknown schema (table answers')]
    for name, says in cases:
        with pytest.raises(NearError) as e: LabelStore(tmp_path/name)
        msg = str(e.value)
        assert msg.startswith(f'the label store {tmp_path/name} {says}') and msg.endswith(FIX), msg
        assert '\n' not in msg
    tables = sqlite3.connect(tmp_path/'cache.sqlite').execute('SELECT name FROM sqlite_master').fetchall()
    assert tables == [('emb',)]                                     # another tool's file is left as it was


def test_corrupt_pages_found_while_reading(tmp_path):
    store = LabelStore(tmp_path/'big.sqlite')
    for i in range(400):
        store.record(f'{i:064x}', 'm', 'p', 0, path=f'/photos/{i}.jpg', prompt='q' * 200,
                     response='A **Wren**. ' * 20)
    store.con.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    store.con.close()
    with open(tmp_path/'big.sqlite', 'r+b') as f:
        f.seek(8192)
        f.write(os.urandom(os.path.getsize(tmp_path/'big.sqlite') - 16384))
    with pytest.raises(NearError) as e: LabelStore(tmp_path/'big.sqlite').frame()
    msg = str(e.value)
    assert msg == f'the label store {tmp_path/"big.sqlite"} is not a SQLite file, or is corrupt; {FIX}', msg
