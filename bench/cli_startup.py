"""Start-up time and peak memory of each `near` command, each in a fresh process.

    python bench/cli_startup.py                 # this checkout's code: the 'after' figures
    python bench/cli_startup.py --code DIR --as before   # another copy of near_nb (e.g. `git archive` of an older commit)

Each command runs `--repeat` times as `python -m near_nb.cli ARGS` under a small wrapper that times it and reads
its peak resident memory (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`); the median time and the largest peak
are kept, with the time to the first line on stdout for `check` (a working command on the shipped sample's
306 images). Figures go to bench/results/cli_startup.json under the name given by --as.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAP = '''import resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
first = p.stdout.readline()
t1 = time.perf_counter()
p.stdout.read()
p.wait()
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{p.returncode} {t2 - t0:.3f} {t1 - t0:.3f} {peak}")
'''

def commands(sample_images:str) -> dict:
    "name -> argv: --version, --help, each command's --help, and `check` on the shipped sample."
    names = ['demo', 'check', 'embed', 'label', 'fit', 'predict', 'run', 'map', 'export']
    out = {'--version': ['--version'], '--help': ['--help']}
    out.update({f'{n} --help': [n, '--help'] for n in names})
    out['bench testbed --help'] = ['bench', 'testbed', '--help']
    out['check SAMPLE'] = ['check', sample_images, '-q']
    return out

def measure(code:Path, argv:list, repeat:int, env:dict) -> dict:
    "Median wall seconds, median seconds to the first line, largest peak resident MB, exit status."
    runs = []
    for _ in range(repeat):
        r = subprocess.run([sys.executable, '-c', WRAP, sys.executable, '-m', 'near_nb.cli', *argv],
                           capture_output=True, text=True, env=env, cwd=code)
        rc, wall, first, peak = r.stdout.split()
        runs.append((float(wall), float(first), int(peak) / 1024, int(rc)))
    return {'seconds': round(statistics.median(w for w, _, _, _ in runs), 2),
            'first_line_s': round(statistics.median(f for _, f, _, _ in runs), 2),
            'peak_mb': round(max(p for _, _, p, _ in runs)), 'exit': runs[0][3]}

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--code', default=str(ROOT), help='the folder holding the near_nb package to measure')
    ap.add_argument('--as', dest='label', default='after', help="the figures' name in the results ('before', 'after')")
    ap.add_argument('--repeat', type=int, default=3, help='runs per command (median time, largest peak)')
    ap.add_argument('--out', default=str(ROOT/'bench'/'results'/'cli_startup.json'), help='the results file')
    a = ap.parse_args()
    code = Path(a.code).resolve()
    env = {**os.environ, 'PYTHONPATH': str(code), 'PYTHONDONTWRITEBYTECODE': '1', 'HF_HUB_OFFLINE': '1',
           'TRANSFORMERS_OFFLINE': '1'}
    images = str(ROOT/'near_nb'/'sample_data')
    found = subprocess.run([sys.executable, '-c', 'from near_nb.data import sample; print(sample().images.root/"images")'],
                           capture_output=True, text=True, env={**env, 'PYTHONPATH': str(ROOT)}).stdout.strip()
    images = found or images
    figures = {}
    for name, argv in commands(images).items():
        figures[name] = measure(code, argv, a.repeat, env)
        print(f"{name:24s} {figures[name]['seconds']:6.2f} s  first line {figures[name]['first_line_s']:6.2f} s  "
              f"{figures[name]['peak_mb']:5d} MB  exit {figures[name]['exit']}", flush=True)
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[a.label] = figures
    results.setdefault('how', {})[a.label] = {
        'code': 'this checkout' if code == ROOT else 'another copy of near_nb', 'repeat': a.repeat,
        'python': platform.python_version(), 'cpus': os.cpu_count(),
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'note': 'median wall time of a fresh `python -m near_nb.cli` process; largest peak resident memory; '
                'the machine was shared with other jobs, so times are upper bounds'}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + '\n')
    print(f'wrote {out}')

if __name__ == '__main__': main()
