"NeaR end to end through `near bench testbed`: the change counts it reports, and answers in other MLLMs' styles."
import json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
from near_nb.data import sample

def near(*args):
    cmd = [sys.executable, '-c', 'import sys; from near_nb.cli import main; sys.exit(main())', *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

def test_bench_reports_what_near_changed(tmp_path):
    out = tmp_path/'bench.json'
    r = near('bench', 'testbed', str(sample().images.root), '--seeds', '1', '--json', str(out), '-q')
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
    assert 'fixed' in r.stdout and 'broken' in r.stdout
    per = j['cost']['per_1000_images']
    assert [per[b]['mllm_calls'] for b in ('0.0', '0.3', '1.0')] == [0, 300, 1000]
    assert per['0.3']['prompt_tokens'] is None and 'not measured' in j['cost']['per_call']   # no run, no tokens

def test_bench_prices_the_budgets_from_a_real_run(tmp_path):
    "`--costs-from STORE --prices IN,OUT`: the bill per 1,000 images from a store's measured tokens and seconds."
    from near_nb.mllm import LabelStore
    store = LabelStore(tmp_path/'run.sqlite')
    for i, (pt, ct, s) in enumerate([(900, 120, 2.0), (1100, 80, 4.0)]):
        store.record(f'{i:064x}', 'vlm-a', 'p', 0, path=f'img{i}.jpg', prompt='name it', response='A Rose.', prompt_tokens=pt,
                     completion_tokens=ct, latency=s)
    store.record('f' * 64, 'vlm-b', 'p', 0, path='other.jpg', prompt='name it', response='A Lily.', prompt_tokens=10**6,
                 completion_tokens=10**6, latency=99.0)
    out = tmp_path/'bench.json'
    r = near('bench', 'testbed', str(sample().images.root), '--seeds', '1', '--json', str(out), '-q',
             '--costs-from', str(tmp_path/'run.sqlite'), '--cost-model', 'vlm-a', '--prices', '2.5,10')
    assert r.returncode == 0, r.stderr
    c = json.loads(out.read_text())['cost']
    assert c['per_call']['calls_measured'] == 2 and c['prices_usd_per_1m_tokens'] == [2.5, 10.0]
    one = c['per_1000_images']['1.0']
    assert (one['prompt_tokens'], one['completion_tokens'], one['usd']) == (10**6, 10**5, 3.5)
    assert one['seconds'] == round(3000 + one['classifier_seconds'], 1)    # 1,000 calls of 3 s, one at a time
    assert c['per_1000_images']['0.0']['usd'] == 0
    assert 'per 1,000 new images at budget 0.3: 300 MLLM calls' in r.stdout
    bad = near('bench', 'testbed', str(sample().images.root), '--prices', 'cheap')
    assert bad.returncode == 2 and 'give two prices' in bad.stderr

STYLES = [  # one answer per style, {name} and {alt} filled in per image
    'The bird in the image is a **{name}**. Unlike the {other}, it has a plain back.',
    '```json\n{{"names": ["{name}", "{alt}"]}}\n```',
    '1. {name}\n2. {alt}\n3. {other}',
    'Here is my identification: **{name}**.',
    'Based on the image, this is most likely a {name}, though it could also be a {alt}.',
    '### Identification\n- **Species:** {name}\n- **Similar species:** {other}',
]

def test_bench_on_answers_in_other_styles(tmp_path):
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
    assert ch['broken'] == 0 and ch['fixed'] >= 1, ch            # slips moved to their class, nothing broken
    assert j['transductive']['near']['cacc'] > j['transductive']['mllm_top1']['cacc']
