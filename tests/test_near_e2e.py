"""NeaR end to end through `near bench testbed`: the change counts it reports, the views' neighbour purity,
answers in other MLLMs' styles. In-process (`cli.main`): what is tested is the command's output, not a process."""
import json
from pathlib import Path
from types import SimpleNamespace
import numpy as np, pandas as pd
import pytest
from near_nb.cli import main
from near_nb.data import sample_dir
from near_nb.mllm import LabelStore

@pytest.fixture
def near(capsys):
    "Run `near ARGS...` in this process: its exit status, stdout and stderr."
    def run(*args):
        try: code = main(list(args))
        except SystemExit as e: code = e.code  # argparse's usage errors
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run

def test_bench_reports_what_near_changed(tmp_path, near):
    out = tmp_path/'bench.json'
    r = near('bench', 'testbed', str(sample_dir()), '--seeds', '1', '--json', str(out), '-q')
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    for p in ('transductive', 'heldout'):
        ch = j[p]['near']['changes']
        assert {'changed', 'fixed', 'broken'} <= set(ch)
        assert ch['fixed'] >= 2 * ch['broken'] and ch['fixed'] > 0, (p, ch)
        assert ch['changed'] >= ch['fixed'] + ch['broken']
    t, h = j['transductive'], j['heldout']
    assert t['near']['cacc'] > t['mllm_top1']['cacc'] and t['near']['sacc'] >= t['mllm_top1']['sacc'] - 1
    assert h['near']['cacc'] > h['ce_raw']['cacc'] and h['near']['sacc'] > h['ce_raw']['sacc']
    held = [m for m in h if not m.startswith('cascade')]
    assert held and all('acc_mapped' in h[m] and 'acc_mapped_std' in h[m] for m in held), held
    assert all('acc_mapped' in v for v in [*h['cascade'].values(), *h['cascade_random'].values()])
    assert h['cascade']['0.0']['acc_mapped'] == h['near']['acc_mapped']        # the two ends are the two methods
    assert h['cascade']['1.0']['acc_mapped'] == h['mllm_top1']['acc_mapped']
    assert h['near']['acc_mapped'] > h['mllm_top1']['acc_mapped'] + 20, h      # unseen spellings map to no class
    assert 'fixed' in r.stdout and 'broken' in r.stdout
    per = j['cost']['per_1000_images']
    assert [per[b]['mllm_calls'] for b in ('0.0', '0.3', '1.0')] == [0, 300, 1000]
    assert per['0.3']['prompt_tokens'] is None and 'not measured' in j['cost']['per_call']   # no run, no tokens
    nb = j['neighbours']                                      # issue 27: the 2-NN purity of each view
    assert set(nb['purity']) == {'image', 'answer', 'both'}
    assert nb['both_weight'] == (j['config']['answer_weight'] or 0.25)   # the view off: 'both' at 0.25
    assert nb['purity']['image'] == 62.6 and nb['purity']['both'] > nb['purity']['answer'] > nb['purity']['image']
    c = j['ceiling']                                          # relabelling alone: NeaR between start and ceiling
    assert c['first_names_cacc'] < t['near']['cacc'] < c['ceiling_cacc'] and 0 < c['unconfirmed'] < 100

def test_bench_prices_the_budgets_from_a_real_run(tmp_path, near):
    "`--costs-from STORE --prices IN,OUT`: the bill per 1,000 images from a store's measured tokens and seconds."
    store = LabelStore(tmp_path/'run.sqlite')
    for i, (pt, ct, s) in enumerate([(900, 120, 2.0), (1100, 80, 4.0)]):
        store.record(f'{i:064x}', 'vlm-a', 'p', 0, path=f'img{i}.jpg', prompt='name it', response='A Rose.', prompt_tokens=pt,
                     completion_tokens=ct, latency=s)
    store.record('f' * 64, 'vlm-b', 'p', 0, path='other.jpg', prompt='name it', response='A Lily.', prompt_tokens=10**6,
                 completion_tokens=10**6, latency=99.0)
    out = tmp_path/'bench.json'
    r = near('bench', 'testbed', str(sample_dir()), '--seeds', '1', '--json', str(out), '-q',
             '--costs-from', str(tmp_path/'run.sqlite'), '--cost-model', 'vlm-a', '--prices', '2.5,10',
             '--support', '0.5', '--merge-agree')  # --support: the old spelling of --merge-support
    assert r.returncode == 0, r.stderr
    assert '--support is deprecated' in r.stderr
    cfg = json.loads(out.read_text())['config']               # the merge checks reach the test bed's vocabulary
    assert (cfg['merge_support'], cfg['merge_agree']) == (0.5, True)
    c = json.loads(out.read_text())['cost']
    assert c['per_call']['calls_measured'] == 2 and c['prices_usd_per_1m_tokens'] == [2.5, 10.0]
    one = c['per_1000_images']['1.0']
    assert (one['prompt_tokens'], one['completion_tokens'], one['usd']) == (10**6, 10**5, 3.5)
    assert one['seconds'] == round(3000 + one['classifier_seconds'], 1)    # 1,000 calls of 3 s, one at a time
    assert c['per_1000_images']['0.0']['usd'] == 0
    assert 'per 1,000 new images at budget 0.3: 300 MLLM calls' in r.stdout
    bad = near('bench', 'testbed', str(sample_dir()), '--prices', 'cheap')
    assert bad.returncode == 2 and 'give two prices' in bad.stderr

STYLES = [  # one answer per style, {name} and {alt} filled in per image
    'The bird in the image is a **{name}**. Unlike the {other}, it has a plain back.',
    '```json\n{{"names": ["{name}", "{alt}"]}}\n```',
    '1. {name}\n2. {alt}\n3. {other}',
    'Here is my identification: **{name}**.',
    'Based on the image, this is most likely a {name}, though it could also be a {alt}.',
    '### Identification\n- **Species:** {name}\n- **Similar species:** {other}',
]

def test_bench_on_answers_in_other_styles(tmp_path, near):
    "A test bed with no `names` column: NeaR parses six answer styles itself, and its changes hold."
    rng = np.random.default_rng(0)
    classes = ['Alder Flycatcher', 'Least Flycatcher', 'Willow Flycatcher', 'Acadian Flycatcher']
    rows, emb = [], []
    for c, cname in enumerate(classes):
        centre = rng.normal(size=32)
        for k in range(6):
            said = cname if k != 5 else 'Dusky Flycatcher'  # one slip per class, a name no other image carries
            text = STYLES[k].format(name=said, alt=classes[(c + 1) % 4], other=classes[(c + 2) % 4])
            rows.append({'image_id': f'{c}/{k}', 'file': '', 'gt_class': c, 'gt_name': cname, 'response': text})
            emb.append(centre + rng.normal(size=32) * 0.3)
    emb = np.array(emb, np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    d = tmp_path/'styles'
    d.mkdir()
    pd.DataFrame(rows).to_csv(d/'labels.csv', index=False)
    np.savez(d/'clip.npz', emb=emb, image_id=np.array([r['image_id'] for r in rows]))
    (d/'classnames.txt').write_text('\n'.join(classes))
    out = tmp_path/'styles.json'
    r = near('bench', 'testbed', str(d), '--seeds', '1', '--json', str(out), '-q')
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    assert j['transductive']['mllm_top1']['cacc'] > 60          # every style parsed to a first name
    ch = j['transductive']['near']['changes']
    # at the defaults the slip (one name on four images, one per class) looks confirmed: NeaR leaves it, breaks nothing
    assert ch['broken'] == 0, ch
    assert j['transductive']['near']['cacc'] >= j['transductive']['mllm_top1']['cacc']
    # the neighbours' names as candidates (an option since they changed nothing on the dev sets) move the slips
    again = ('bench', 'testbed', str(d), '--seeds', '1', '--out', str(out), '-q', '--neighbour-weight', 'auto')
    r = near(*again)
    assert r.returncode == 1 and 'already exists: pass --force' in r.stderr   # refused before any work
    r = near(*again, '--force')
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    ch = j['transductive']['near']['changes']
    assert ch['broken'] == 0 and ch['fixed'] >= 1, ch            # slips moved to their class, nothing broken
    assert j['transductive']['near']['cacc'] > j['transductive']['mllm_top1']['cacc']
