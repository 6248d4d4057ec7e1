"`near` starts at once: --help, --version and every `near CMD --help` import no heavy library (checked structurally)."
import json, subprocess, sys
import pytest
from near_nb.cli import parser

HEAVY = ('torch', 'torchvision', 'open_clip', 'transformers', 'sklearn', 'scipy', 'faiss', 'pandas',
         'sentence_transformers', 'pyarrow', 'PIL')
PROBE = '''import json, sys
from near_nb.cli import main
out = {}
for argv in json.loads(sys.argv[1]):
    try: main(argv)
    except SystemExit: pass
    out[' '.join(argv)] = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print('PROBE ' + json.dumps(out))
'''

def commands():
    "Every `near CMD` and `near bench WHAT`, from the parser itself (a new command is checked the day it is added)."
    sub = next(a for a in parser()._actions if a.dest == 'cmd')
    out = []
    for name, p in sub.choices.items():
        inner = next((a for a in p._actions if a.dest == 'what'), None)
        out += [[name, w] for w in inner.choices] if inner else [[name]]
    return out

def probe(argvs):
    "Run each argv through `main` in ONE fresh process, after one another; the heavy modules loaded after each."
    r = subprocess.run([sys.executable, '-c', PROBE, json.dumps(argvs), json.dumps(HEAVY)], capture_output=True,
                       text=True, timeout=120)
    line = next(l for l in r.stdout.splitlines() if l.startswith('PROBE '))
    return json.loads(line[len('PROBE '):]), r.stdout

def test_help_and_version_import_nothing_heavy():
    "--version, --help and each CMD --help, in a process of its own: sys.modules holds none of HEAVY after all of them."
    argvs = [['--version'], ['--help'], []] + [c + ['--help'] for c in commands()]
    assert len(argvs) >= 13                                   # demo ... export, run, map and bench testbed
    loaded, out = probe(argvs)
    assert loaded == {' '.join(a): [] for a in argvs}, loaded
    assert 'near_nb ' in out and 'usage: near run' in out and 'usage: near map' in out

def test_usage_errors_import_nothing_heavy():
    "A flag checked at the door (a number out of range, an unknown option) fails before any command module loads."
    argvs = [['fit', 'l.csv', '--out', 'c', '--epochs', '1000000000'], ['label', 'i', '--mllm', 'm', '--store', 's',
             '--out', 'o.csv', '--timeout', 'nan'], ['predict', 'i', '--classifier', 'c', '--out', 'p.csv', '--top-k', '0']]
    loaded, _ = probe(argvs)
    assert all(v == [] for v in loaded.values()), loaded

def test_the_probe_sees_heavy_imports():
    "The check can fail: `--to` reads the exporters' registry when parsed, and that module loads pandas."
    argv = ['export', 'p.csv', '--to', 'nosuch', '--out', 'x']
    loaded, _ = probe([['--version'], argv])
    assert loaded['--version'] == [] and 'pandas' in loaded[' '.join(argv)]

def test_import_near_nb_and_cli_stay_light():
    code = 'import sys, near_nb, near_nb.cli, near_nb.config; print(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:])))'
    r = subprocess.run([sys.executable, '-c', code, *HEAVY], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == '[]', r.stdout + r.stderr

def test_a_heavy_command_says_at_once_that_it_is_loading(tmp_path):
    "On a terminal, `near embed` prints its first line before torch loads; into a pipe (scripts, -q, --json) it does not."
    import os, pty, select
    cmd = [sys.executable, '-m', 'near_nb.cli', 'embed', str(tmp_path), '--random-init', '--out', str(tmp_path/'e.npz')]
    probe_torch = "import sys; sys.argv = {argv!r}; import near_nb.cli as c; a = c.parser().parse_args(sys.argv[1:]); " \
                  "c.announce(a); print('TORCH', 'torch' in sys.modules, file=sys.stderr)"
    main_fd, sub_fd = pty.openpty()
    p = subprocess.Popen([sys.executable, '-c', probe_torch.format(argv=cmd[2:])], stderr=sub_fd,
                         stdout=subprocess.DEVNULL)
    os.close(sub_fd)
    text = b''
    while p.poll() is None or select.select([main_fd], [], [], 0.5)[0]:
        if not select.select([main_fd], [], [], 30)[0]: break
        try: chunk = os.read(main_fd, 4096)
        except OSError: break
        if not chunk: break
        text += chunk
    os.close(main_fd)
    lines = text.decode().splitlines()
    assert lines[0].startswith('near embed: loading torch') and lines[1] == 'TORCH False', lines
    r = subprocess.run([sys.executable, '-c', probe_torch.format(argv=cmd[2:])], capture_output=True, text=True)
    assert r.stderr.splitlines() == ['TORCH False']                # a pipe: nobody watching, nothing said
