"""`near run` and `near map`: the parsing and the wiring to `pipeline.run_job` / `pipeline.write_run_map`, in-process.

The two pipeline functions are stood in for with `unittest.mock` (their end-to-end test lives with them): these tests
check that each flag reaches the argument it names, that the MLLM is built as `near label` builds it and the backbone
and `NearConfig` as `near fit` builds them, and what the command prints.
"""
import json
from pathlib import Path
from unittest import mock
import pytest
from near_nb import pipeline
from near_nb.cli import main, parser
from near_nb.near import NearConfig
from near_nb.data import sample

REPLAY = f"replay:{sample().images.root/'labels.csv'}"  # recorded answers: a labeler that needs no server

SUMMARY = {'paid_calls': 7, 'cost_usd': 0.0042, 'files': ['out/report.json', 'out/refined_labels.csv',
                                                          'out/classifier', 'out/predictions.csv', 'out/near_map.html']}

def run(capsys, *args):
    try: rc = main([str(a) for a in args])
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err

@pytest.fixture
def run_job():
    fake = mock.Mock(return_value=dict(SUMMARY))
    with mock.patch.object(pipeline, 'run_job', fake, create=True): yield fake

@pytest.fixture
def write_run_map():
    fake = mock.Mock(side_effect=lambda table, out, **kw: Path(out))
    with mock.patch.object(pipeline, 'write_run_map', fake, create=True): yield fake

def test_run_passes_every_flag(run_job, capsys, tmp_path):
    rc, out, err = run(capsys, 'run', tmp_path/'imgs', '--mllm', 'openai:some-vlm', '--base-url', 'http://127.0.0.1:9/v1',
                       '--sample', '40', '--out', tmp_path/'o', '--store', tmp_path/'s.sqlite', '--epochs', '4', '--k', '5',
                       '--seed', '3', '--timeout', '12', '--max-side', '512', '--force', '-q')
    assert rc == 0, err
    (images, out_dir), kw = run_job.call_args
    assert (images, out_dir) == (str(tmp_path/'imgs'), tmp_path/'o')
    assert kw['sample'] == 40 and kw['store'] == str(tmp_path/'s.sqlite') and kw['force'] is True and kw['seed'] == 3
    assert kw['config'] == NearConfig(epochs=4, k=5, seed=3)                 # as near fit reads the NeaR flags
    assert kw['backbone'].model_id == 'ViT-B-16/openai'                     # as near fit builds the backbone
    lab = kw['labeler']
    assert lab.model == 'some-vlm' and kw['progress'] is False        # -q: no bars
    assert 'near run: 7 MLLM calls paid ($0.0042)' in out and 'near_map.html' in out and 'predictions.csv' in out

def test_run_defaults_and_json(run_job, capsys, tmp_path):
    rc, out, err = run(capsys, 'run', tmp_path/'imgs', '--mllm', REPLAY, '--out', tmp_path/'o', '--json')
    assert rc == 0, err
    kw = run_job.call_args.kwargs
    assert kw['sample'] is None and kw['store'] is None and kw['force'] is False and kw['config'] == NearConfig()
    r = json.loads(out)
    assert r['paid_calls'] == 7 and r['random_weights'] is False and r['files'] == SUMMARY['files']

def test_run_random_weights_are_said(run_job, capsys, tmp_path):
    rc, out, err = run(capsys, 'run', tmp_path/'imgs', '--mllm', REPLAY, '--out', tmp_path/'o', '--random-init',
                       '--model', 'ViT-B-32', '-q')
    assert rc == 0 and 'warning: ViT-B-32/random-seed0 has random weights' in err
    assert run_job.call_args.kwargs['backbone'].model_id == 'ViT-B-32/random-seed0'

def test_run_checks_its_flags_before_any_work(run_job, capsys, tmp_path):
    base = ['run', tmp_path/'imgs', '--out', tmp_path/'o']
    for bad, says in [([], '--mllm'), (['--mllm', 'm', '--sample', '0'], '--sample'),
                      (['--mllm', 'm', '--temperature', 'nan'], '--temperature'), (['--mllm', 'm', '--epochs', '-1'], '--epochs')]:
        rc, _, err = run(capsys, *base, *bad)
        assert rc == 2 and says in err, (bad, err)
    assert run_job.call_count == 0
    rc, _, err = run(capsys, *base, '--mllm', 'nosuch:x')                     # the labeler, as near label builds it
    assert rc == 1 and "unknown labeler scheme 'nosuch'" in err and run_job.call_count == 0

def test_run_failure_is_one_line(capsys, tmp_path):
    fake = mock.Mock(side_effect=ValueError('the store is locked'))
    with mock.patch.object(pipeline, 'run_job', fake, create=True):
        rc, _, err = run(capsys, 'run', tmp_path/'imgs', '--mllm', REPLAY, '--out', tmp_path/'o')
    assert rc == 1 and err.strip() == 'near run: error: the store is locked'

def test_map_passes_table_embeddings_title(write_run_map, capsys, tmp_path):
    rc, out, err = run(capsys, 'map', tmp_path/'predictions.csv', '--embeddings', tmp_path/'e.npz', '--out', tmp_path/'m.html',
                       '--title', 'my run')
    assert rc == 0, err
    (table, out_html), kw = write_run_map.call_args
    assert (table, out_html) == (tmp_path/'predictions.csv', tmp_path/'m.html')
    assert kw == {'embeddings': tmp_path/'e.npz', 'title': 'my run'}
    assert out.strip() == f'near map: wrote {tmp_path/"m.html"} (open it in a browser)'
    rc, out, _ = run(capsys, 'map', tmp_path/'labels.csv', '--out', tmp_path/'m2.html', '--json')
    assert rc == 0 and json.loads(out)['out'] == str(tmp_path/'m2.html') and write_run_map.call_args.kwargs['embeddings'] is None

def test_map_refuses_before_drawing(write_run_map, capsys, tmp_path):
    (tmp_path/'taken.html').write_text('x')
    rc, _, err = run(capsys, 'map', 't.csv', '--out', tmp_path/'taken.html')
    assert rc == 1 and 'already exists: pass --force' in err
    rc, _, err = run(capsys, 'map', 't.csv', '--out', tmp_path/'m.png')
    assert rc == 1 and 'name an .html file' in err
    assert write_run_map.call_count == 0
    rc, _, _ = run(capsys, 'map', 't.csv', '--out', tmp_path/'taken.html', '--force')
    assert rc == 0 and write_run_map.call_count == 1
