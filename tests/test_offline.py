"""Offline, quick and complete: weights that are in no cache and cannot be fetched fail at once (HF_HUB_OFFLINE, or
a host that does not answer within `embed.HUB_TIMEOUT`), in one line that names what to fetch (the Hub repo and
file, or URL, from open_clip's own config for the model and tag) and how to pass it. In-process: the network is
simulated (a local socket that accepts and never answers, a socket layer that refuses, an endpoint that does not
resolve; an "unroutable" address is no test here, since this sandbox answers every address), and open_clip is
never asked."""
import socket, time
import pytest
from near_nb import embed
from near_nb.embed import Backbone, BackboneLoadError, weights_source

@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    "An empty cache folder (pass it as cache_dir); open_clip's loader fails the test if it is reached (it would retry ~60 s)."
    def asked(*a, **k): raise AssertionError('open_clip was asked to download')
    import open_clip
    monkeypatch.setattr(open_clip, 'create_model_and_transforms', asked)
    return tmp_path

def _load_error(model='ViT-B-32', tag='openai', cache_dir=None) -> tuple:
    "(message, seconds) of loading `model`/`tag`."
    t0 = time.time()
    with pytest.raises(BackboneLoadError) as e: Backbone(model, tag, cache_dir=cache_dir).load()
    return str(e.value), time.time() - t0

def test_offline_pretrained_tag_gives_clear_error(no_weights, monkeypatch):
    "HF_HUB_OFFLINE: at once, one line with the model, the repo and file to fetch, and both ways to pass it."
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    out, took = _load_error(cache_dir=str(no_weights/'clip'))
    src = weights_source('ViT-B-32', 'openai')
    assert "'ViT-B-32'" in out and "pretrained='/path/to/" in out and 'random_init=True' in out
    assert src['repo'] in out and src['file'] in out and '--pretrained PATH' in out and 'HF_HUB_OFFLINE' in out
    assert '\n' not in out and took < 5, took

@pytest.fixture
def black_hole():
    "http://127.0.0.1:PORT: a socket that accepts connections (the kernel's backlog) and never answers."
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(8)
    yield f'http://127.0.0.1:{s.getsockname()[1]}'
    s.close()

@pytest.mark.parametrize('tag', ['openai', 'laion2b_s34b_b79k'])
def test_hub_that_never_answers_fails_within_seconds(no_weights, monkeypatch, black_hole, tag):
    "No HF_HUB_OFFLINE, and the Hub takes the connection but never answers: the message arrives in under 5 s."
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setenv('HF_ENDPOINT', black_hole)
    out, took = _load_error('ViT-B-32', tag, cache_dir=str(no_weights/'clip'))
    src = weights_source('ViT-B-32', tag)
    assert src['repo'] in out and src['file'] in out and '--pretrained PATH' in out, out
    assert f'127.0.0.1 did not answer within {embed.HUB_TIMEOUT:g} s' in out and took < 5, (took, out)

def test_no_route_and_no_name(no_weights, monkeypatch):
    "A socket layer that cannot connect (no route), and an endpoint whose name does not resolve: at once."
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    def no_route(*a, **k): raise OSError(113, 'No route to host')
    with monkeypatch.context() as m:
        m.setattr(socket, 'create_connection', no_route)
        out, took = _load_error(cache_dir=str(no_weights/'clip'))
    assert 'huggingface.co did not answer' in out and took < 5
    monkeypatch.setenv('HF_ENDPOINT', 'https://no-such-host.invalid')
    out, took = _load_error(cache_dir=str(no_weights/'clip'))
    assert 'no-such-host.invalid did not answer' in out and took < 5

def test_missing_pretrained_file_is_one_line(no_weights):
    "A --pretrained file that is not there: one line that says so, a few tags, and what to pass; not every tag."
    out, took = _load_error('ViT-B-16', 'checkpoints/missing.pt')
    assert out.count('\n') == 0 and len(out) < 300 and "'checkpoints/missing.pt' is neither a local file" in out
    assert '--pretrained PATH' in out and took < 5

def test_near_embed_offline_error_after_the_bar(no_weights, monkeypatch, capsys, photos):
    "`near embed` offline: exit 1, and the error is a line of its own after the closed progress bar."
    from near_nb.cli import main
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    t0 = time.time()
    rc = main(['embed', str(photos), '--out', str(no_weights/'e.npz'), '--model', 'ViT-B-32',
               '--cache', str(no_weights/'cache.sqlite'), '--workers', '0'])
    err = capsys.readouterr().err
    assert rc == 1 and time.time() - t0 < 30
    line = next(l for l in err.splitlines() if 'error' in l)
    assert line.startswith('near embed: error:'), err   # its own line, not glued to the bar's
    src = weights_source('ViT-B-32', 'openai')
    assert src['repo'] in line and '--pretrained PATH' in line
    assert err.rstrip().splitlines()[-1] == line   # nothing (no bar) drawn after it
