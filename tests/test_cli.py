"The `near` command's conventions and its fit -> predict -> export workflow on the shipped sample (tiny random-weight CLIP)."
import json, os, subprocess, sys
import numpy as np, pandas as pd, pytest
from PIL import Image
import argparse, dataclasses
from fastcore.docments import docments
from near_nb.cli import main, parser, config_from_args, FLAG_NAMES
from near_nb.near import NearConfig
from near_nb.classifier import NearClassifier
from near_nb.data import sample, sample_dir
from near_nb.embed import Backbone
from near_nb.testing import tiny_clip_config, FakeChatServer, fingerprint
from near_nb.formats import read_table
from near_nb.tables import sidecar_path
from near_nb.mllm import LabelStore, from_mllm, is_new_name

SAMPLE = sample().images.root
LABELS = SAMPLE/'labels.csv'

def near(*args):
    "The installed command in a subprocess: (exit status, stdout, stderr)."
    r = subprocess.run([sys.executable, '-c', 'import sys; from near_nb.cli import main; sys.exit(main())', *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr

def run(capsys, *args):
    "`main` in this process: (exit status, stdout, stderr)."
    try: rc = main([str(a) for a in args])
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err

@pytest.fixture(scope='module')
def fitted(tmp_path_factory):
    "`near fit` on the shipped sample's labels with a tiny random-weight backbone, and `near embed` of the same images."
    d = tmp_path_factory.mktemp('fit')
    cfg = tiny_clip_config(d/'tinycli.json')
    rc = main(['fit', str(LABELS), '--model', str(cfg), '--random-init', '--out', str(d/'clf'), '--epochs', '5', '-q'])
    assert rc == 0
    assert main(['embed', str(SAMPLE/'images'), '--model', str(cfg), '--random-init', '--out', str(d/'emb.npz'), '-q']) == 0
    return d, cfg

def test_version_bare_command_and_help(capsys):
    r = subprocess.run([sys.executable, '-m', 'near_nb.cli', '--version'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith('near_nb ')          # the installed entry point, as a process
    rc, out, err = run(capsys)
    assert rc == 0 and out.startswith('usage: near') and 'predict' in out and 'fit' in out and not err
    for cmd in ('run', 'map'): assert cmd in out
    rc, out, _ = run(capsys, 'fit', '--help')
    assert rc == 0 and f'(default: {NearConfig().k})' in out and 'default: ViT-B-16' in out and 'default: None' not in out
    rc, _, err = run(capsys, 'predict', 'imgs', '--out', 'p.csv')
    assert rc == 2 and 'the following arguments are required: --classifier' in err

def _all_parsers(p):
    "(prog, parser) for `p` and every sub-command under it."
    yield p.prog, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values(): yield from _all_parsers(sub)

def test_every_option_has_help():
    "Walk the parser: every option and positional of every command says what it is."
    missing = [f'{prog} {a.option_strings or a.dest}' for prog, p in _all_parsers(parser()) for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help or '').strip()]
    assert missing == [], missing
    assert len(list(_all_parsers(parser()))) >= 12

def test_one_meaning_per_flag(capsys):
    "--top-k was 'names asked' in label and 'names kept' in predict: two names now, the old spelling still works, with a line."
    p = parser()
    args = p.parse_args(['predict', 'imgs', '--classifier', 'c', '--out', 'p.csv', '--top-k', '3'])
    assert args.names_kept == 3 and '--top-k is deprecated: use --names-kept' in capsys.readouterr().err
    args = p.parse_args(['label', 'imgs', '--mllm', 'm', '--store', 's', '--out', 'o.csv', '--top-k', '4'])
    assert args.names_asked == 4 and '--top-k is deprecated: use --names-asked' in capsys.readouterr().err
    assert p.parse_args(['label', 'i', '--mllm', 'm', '--store', 's', '--out', 'o.csv']).names_asked is None
    for prog, sub in _all_parsers(p):                      # --json is a switch that prints the report, everywhere
        a = sub._option_string_actions.get('--json')
        if a is not None and prog != 'near bench testbed': assert a.nargs == 0, prog
        if '--out' in sub._option_string_actions and prog not in ('near embed', 'near bench testbed'):
            assert '--force' in sub._option_string_actions, prog   # an output is replaced only with --force
    bench = p.parse_args(['bench', 'testbed', 'd', '--json'])
    assert bench.json is True and bench.out is None

def test_near_flags_come_from_near_config():
    "Every NearConfig field is a flag of `near fit` (its doc the help, its default the default); bench testbed has them too."
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    fit = sub.choices['fit']
    by_field = {a.field: a for a in fit._actions if hasattr(a, 'field')}
    docs = docments(NearConfig)
    for f in dataclasses.fields(NearConfig):
        a = by_field[f.name]
        assert a.default == f.default and a.help == (docs[f.name] or f.name.replace('_', ' ')), f.name
        flag = FLAG_NAMES.get(f.name, '--' + f.name.replace('_', '-'))
        assert a.option_strings == ([flag, '--no-' + flag[2:]] if f.type == 'bool' else [flag]), f.name
    for old in ('--k', '--epochs', '--min-conf', '--relabel', '--no-relabel', '--gmm', '--no-gmm', '--seed', '--config',
                '--batch-size', '--model', '--pretrained', '--random-init', '--device', '--cache', '--similar'):
        assert old in fit._option_string_actions, old                      # every flag near fit had keeps working
    base = ['fit', 'labels.csv', '--out', 'c']
    args = fit.parse_args(base[1:] + ['--k', '7', '--no-relabel', '--gmm', '--neighbour-weight', '0.25', '--min-conf', '0.6',
                                      '--train-batch-size', '16', '--batch-size', '8', '--pll', 'proden-gmm', '--epochs', '4'])
    assert args.batch_size == 8                                            # the backbone's: images per forward pass
    assert config_from_args(args) == NearConfig(k=7, relabel=False, gmm=True, neighbour_weight=0.25, min_conf=0.6,
                                                batch_size=16, pll='proden-gmm', epochs=4)
    assert config_from_args(fit.parse_args(base[1:])) == NearConfig()
    assert config_from_args(fit.parse_args(base[1:] + ['--mode', 'top']), 'top') == NearConfig(batch_size=32, lr=1e-5)
    bench = sub.choices['bench']._actions[-1].choices['testbed']
    assert config_from_args(bench.parse_args(['d', '--k', '0', '--no-contrasts'])) == NearConfig(k=0, contrasts=False)
    assert '--seed' not in bench._option_string_actions                    # the bench sets the seeds itself

def test_fit_writes_classifier_refined_labels_and_summary(fitted, capsys):
    d, cfg = fitted
    assert {'config.json', 'model.safetensors', 'refined_labels.csv'} <= {p.name for p in (d/'clf').iterdir()}
    c = json.loads((d/'clf'/'config.json').read_text())
    assert c['backbone']['model_id'] == Backbone(str(cfg), None, random_init=True).model_id and c['near_config']['epochs'] == 5
    assert c['training']['images'] == 306 and c['training']['vocabulary'] == len(c['names'])
    ref = pd.read_csv(d/'clf'/'refined_labels.csv', keep_default_na=False)
    assert len(ref) == 306 and set(ref.near) <= set(c['names'])
    assert (ref.changed == (ref.mllm != ref.near)).all()
    rc, out, _ = run(capsys, 'fit', LABELS, '--embeddings', d/'emb.npz', '--model', cfg, '--random-init',
                     '--out', d/'clf_json', '--epochs', '3', '--similar', '0', '--json', '-q')
    r = json.loads(out)
    assert rc == 0 and r['images'] == 306 and r['with_answer'] == 306 and r['mode'] == 'head'
    assert sum(r['top_names'].values()) <= 306 and r['names_active'] <= r['vocabulary']

def test_fit_checks_merges_with_the_images_and_the_answers(fitted, capsys):
    "`near fit --merge-support Q [--merge-agree]`: each check keeps fewer sentence merges; config.json records it."
    d, cfg = fitted
    sizes = []
    for extra in ([], ['--merge-support', '0.5'], ['--merge-support', '0.5', '--merge-agree']):
        out = d/f'clf_merges_{len(extra)}'
        rc, _, err = run(capsys, 'fit', LABELS, '--embeddings', d/'emb.npz', '--model', cfg, '--random-init',
                         '--out', out, '--epochs', '1', '-q', *extra)
        assert rc == 0, err
        c = json.loads((out/'config.json').read_text())
        assert (c['near_config']['merge_support'], c['near_config']['merge_agree']) == \
               (0.5 if extra else 0.0, '--merge-agree' in extra)
        sizes.append(c['training']['vocabulary'])
    # each check keeps a subset of the merges before it (fewer merges: more names); on this random-weight
    # backbone's embeddings the images alone may keep all, the answers then reject some
    assert sizes[0] <= sizes[1] <= sizes[2] and sizes[0] < sizes[2], sizes

def test_fit_then_predict_round_trip(fitted, capsys, tmp_path):
    d, _ = fitted
    imgs = tmp_path/'new'
    imgs.mkdir()
    files = sorted((SAMPLE/'images').rglob('*.jpg'))[::40]
    for f in files: (imgs/f.name).write_bytes(f.read_bytes())
    (imgs/'broken.jpg').write_bytes(files[0].read_bytes()[:200])
    rc, out, err = run(capsys, 'predict', imgs, '--classifier', d/'clf', '--out', tmp_path/'p.csv', '--names-kept', '3', '-q')
    assert rc == 0, err
    assert 'warning: ' in err and 'random weights' in err        # the fixture's classifier has random weights
    assert f'named {len(files)} of {len(files) + 1} images (1 unreadable)' in out
    assert 'unreadable:' in err and 'broken.jpg' in err
    p = read_table(tmp_path/'p.csv')
    assert list(p.columns[:6]) == ['path', 'sha256', 'name', 'score', 'margin', 'source'] and (p.source == 'classifier').all()
    assert p.random_weights.all()                                # the file itself says so
    plain = pd.read_csv(tmp_path/'p.csv', keep_default_na=False)   # a plain CSV: any reader sees the columns
    assert list(plain.columns) == list(p.columns) and len(plain) == len(p)
    assert json.loads(sidecar_path(tmp_path/'p.csv').read_text())['near_nb']['rows'] == len(p)   # the record
    ok = p[p.error == '']
    assert len(ok) == len(files) and ok.top_names.map(len).eq(3).all() and (ok.name == ok.top_names.str[0]).all()
    clf = NearClassifier.from_pretrained(d/'clf')
    want = clf.predict([imgs/f.name for f in sorted(files, key=lambda f: f.name)], top=1)
    assert ok.name.tolist() == [w[0][0] for w in want]
    assert ((ok.margin >= 0) & (ok.margin <= ok.score)).all()     # top probability minus the runner-up's
    np.testing.assert_allclose(ok.score, [w[0][1] for w in want], atol=1e-5)
    assert p.loc[p.path.str.endswith('broken.jpg'), 'name'].item() == ''
    rc, out, _ = run(capsys, 'predict', imgs, '--classifier', d/'clf', '--out', tmp_path/'p.parquet', '--json', '-q')
    r = json.loads(out)
    assert rc == 0 and (r['images'], r['named'], r['unreadable']) == (len(files) + 1, len(files), 1) and r['random_weights']
    assert read_table(tmp_path/'p.parquet').name.tolist() == p.name.tolist()

def test_fit_from_a_label_store_and_an_imagefolder_tree(fitted, capsys, tmp_path):
    d, cfg = fitted
    rc, _, err = run(capsys, 'label', LABELS, '--mllm', f'replay:{LABELS}', '--store', tmp_path/'s.sqlite',
                     '--out', tmp_path/'labels.csv', '--domain', 'flower', '-q')
    assert rc == 0, err
    common = ['--embeddings', d/'emb.npz', '--model', cfg, '--random-init', '--epochs', '2', '--similar', '0', '--json', '-q']
    rc, out, err = run(capsys, 'fit', tmp_path/'s.sqlite', '--out', tmp_path/'c1', *common)
    assert rc == 0, err
    named = LabelStore(tmp_path/'s.sqlite').frame().names.map(bool)
    assert json.loads(out)['with_answer'] == named.sum() > 290   # the store's own parse finds no name in a few answers
    rc, out, err = run(capsys, 'fit', SAMPLE/'images', '--out', tmp_path/'c2', *common)
    assert rc == 0, err
    r = json.loads(out)
    assert r['with_answer'] == 306 and r['distinct_first_names'] == 102   # the tree's folder names

def test_export_each_format(fitted, capsys, tmp_path):
    d, _ = fitted
    ref = d/'clf'/'refined_labels.csv'
    rc, out, _ = run(capsys, 'export', ref, '--to', 'imagefolder', '--out', tmp_path/'tree')
    links = list((tmp_path/'tree').rglob('*.jpg'))
    assert rc == 0 and len(links) == 306 and all(p.is_symlink() for p in links)
    refined = pd.read_csv(ref, keep_default_na=False)
    assert {p.parent.name for p in links} == set(refined.near.str.replace('/', '_'))
    rc, _, _ = run(capsys, 'export', ref, '--to', 'coco', '--out', tmp_path/'coco.json')
    coco = json.loads((tmp_path/'coco.json').read_text())
    assert rc == 0 and len(coco['images']) == 306 and len(coco['annotations']) == 306
    assert 'score' in coco['annotations'][0] and coco['images'][0]['width'] > 0   # the confidence column
    rc, _, _ = run(capsys, 'export', ref, '--to', 'fiftyone', '--out', tmp_path/'fo')
    labels = json.loads((tmp_path/'fo'/'labels.json').read_text())
    assert rc == 0 and len(labels['labels']) == 306 and sorted(labels['classes']) == sorted(set(refined.near))
    rc, out, _ = run(capsys, 'export', ref, '--to', 'csv', '--out', tmp_path/'r.parquet', '--json')
    assert rc == 0 and json.loads(out)['named'] == 306 and len(read_table(tmp_path/'r.parquet')) == 306

def test_output_errors_are_one_line_before_any_work(fitted, capsys, tmp_path):
    d, cfg = fitted
    (tmp_path/'taken.csv').write_text('x')
    pred = ['predict', SAMPLE/'images', '--classifier', d/'clf', '-q', '--out']
    cases = [(pred + [tmp_path/'taken.csv'], 'already exists: pass --force'),
             (pred + [tmp_path], 'is a folder: give a file name'),
             (pred + [tmp_path/'p.txt'], 'name a .csv or .parquet file'),
             (pred + [tmp_path/'taken.csv'/'p.csv'], 'is a file, so'),
             (['fit', LABELS, '--out', tmp_path/'taken.csv'], 'is a file: give a folder'),
             (['fit', LABELS, '--out', d/'clf'], 'already exists: pass --force'),
             (['demo', '--out', tmp_path/'taken.csv'], 'is a file: --out wants a folder'),
             (['demo', '--out', tmp_path], 'holds other files'),
             (['export', d/'clf'/'refined_labels.csv', '--to', 'coco', '--out', tmp_path/'taken.csv'], 'already exists'),
             (['label', LABELS, '--mllm', f'replay:{LABELS}', '--store', tmp_path/'s.sqlite', '--out', tmp_path/'taken.csv'],
              'already exists: pass --force')]
    for args, msg in cases:
        rc, out, err = run(capsys, *args)
        assert rc == 1 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith(f'near {args[0]}: error: ')

def test_input_errors(fitted, capsys, tmp_path):
    d, cfg = fitted
    (tmp_path/'bad.json').write_text('{"kk": 1}')
    (tmp_path/'head.json').write_text('{"head": "mean"}')
    pd.DataFrame({'path': ['/nowhere/x.jpg'], 'names': ['["x"]']}).to_csv(tmp_path/'other.csv', index=False)
    pred = ['predict', SAMPLE/'images', '--out', tmp_path/'p.csv', '-q', '--classifier']
    cases = [(pred + ['/nowhere/clf'], 'no such classifier folder'),
             (pred + ['someone/not-here'], 'neither a folder here nor a Hub repo'),
             (pred + [d/'clf'/'model.safetensors'], 'is a file: a saved classifier is a folder'),
             (['fit', tmp_path/'nope.csv', '--out', tmp_path/'c'], 'no such labels file'),
             (['fit', LABELS, '--out', tmp_path/'c', '--embeddings', d/'emb.npz', '--mode', 'top'], 'give images, not --embeddings'),
             (['fit', LABELS, '--out', tmp_path/'c', '--config', tmp_path/'bad.json'], "unknown NeaR option(s) ['kk']"),
             (['fit', LABELS, '--out', tmp_path/'c', '--config', tmp_path/'head.json'],
              "NearConfig.head must be one of 'prototypes', 'trained' (add one with register_head), not 'mean'"),
             (['fit', LABELS, '--out', tmp_path/'c', '--embeddings', d/'emb.npz', '--model', 'ViT-B-16', '--pretrained', 'openai'],
              f"holds {Backbone(str(cfg), None, random_init=True).model_id} embeddings, but --model/--pretrained say ViT-B-16/openai"),
             (['fit', tmp_path/'other.csv', '--out', tmp_path/'c', '--embeddings', d/'emb.npz', '--model', cfg, '--random-init'],
              'none of the 306 images has an answer')]
    for args, msg in cases:
        rc, out, err = run(capsys, *args)
        errors = [l for l in err.strip().splitlines() if ': warning: ' not in l]   # random weights: said apart
        assert rc == 1 and msg in err and len(errors) == 1, (args, err)
    rc, _, err = run(capsys, *pred[:-1], '-v', '--classifier', '/nowhere/clf')
    assert rc == 1 and 'Traceback' in err and err.strip().endswith('no such classifier folder: /nowhere/clf')
    rc, _, err = run(capsys, 'fit', LABELS, '--out', tmp_path/'c', '--mode', 'bogus')
    assert rc == 2 and "invalid choice: 'bogus'" in err

def test_missing_weights_name_pretrained_path(capsys, tmp_path):
    "A classifier over ViT-B-32/openai features, offline, on images the cache does not hold."
    NearClassifier(['a', 'b'], np.eye(2, 512), backbone=Backbone('ViT-B-32', 'openai')).save_pretrained(tmp_path/'clf')
    (tmp_path/'imgs').mkdir()
    Image.new('RGB', (40, 40), (200, 30, 30)).save(tmp_path/'imgs'/'a.png')
    rc, _, err = run(capsys, 'predict', tmp_path/'imgs', '--classifier', tmp_path/'clf', '--out', tmp_path/'p.csv', '-q')
    assert rc == 1 and '--pretrained PATH' in err and "'ViT-B-32'" in err and 'Backbone(' not in err
    assert len(err.strip().splitlines()) == 1

def test_third_party_noise_is_quiet_unless_verbose(tmp_path):
    "A fresh process (third-party libraries read their switches at import): only near's own warning, unless -v."
    cfg = tiny_clip_config(tmp_path/'tinyquiet.json')
    embed = ['embed', SAMPLE/'images'/'000.Pink_Primrose', '--model', cfg, '--random-init', '-q']
    rc, _, err = near(*embed, '--out', tmp_path/'e.npz', '--cache', tmp_path/'c.sqlite')
    assert rc == 0 and len(err.strip().splitlines()) == 1 and 'warning: ' in err and 'random weights' in err, err
    rc, _, err = near(*embed, '--out', tmp_path/'e2.npz', '--cache', tmp_path/'c2.sqlite', '-v')
    assert rc == 0 and 'No pretrained weights loaded' in err   # open_clip's own log line, shown with -v

def test_fit_mode_top_trains_the_tower(fitted, capsys, tmp_path):
    d, cfg = fitted
    pd.read_csv(LABELS).head(12).assign(file=lambda t: [str(SAMPLE/f) for f in t.file]).to_csv(tmp_path/'l.csv', index=False)
    rc, out, err = run(capsys, 'fit', tmp_path/'l.csv', '--mode', 'top', '--n-top', '1', '--epochs', '2', '--model', cfg,
                       '--random-init', '--similar', '0', '--out', tmp_path/'clf', '--json', '-q')
    assert rc == 0, err
    c = json.loads((tmp_path/'clf'/'config.json').read_text())
    assert json.loads(out)['mode'] == 'top' and c['tuned_tower'] and c['near_config']['batch_size'] == 32
    clf = NearClassifier.from_pretrained(tmp_path/'clf')
    assert any(k.startswith('transformer.resblocks.1.') for k in clf.visual_state)
    rc, out, err = run(capsys, 'predict', SAMPLE/'images'/'000.Pink_Primrose', '--classifier', tmp_path/'clf',
                       '--out', tmp_path/'p.csv', '-q')
    assert rc == 0 and 'named 3 of 3 images' in out, err

def test_predict_cascade_reranks_the_least_confident_and_resumes(fitted, capsys, tmp_path):
    "`near predict --budget`: the least confident images go to the MLLM (the fake server re-ranking), paid once."
    from near_nb.mllm import image_data_url
    d, _ = fitted
    imgs = tmp_path/'new'
    imgs.mkdir()
    files = sorted((SAMPLE/'images').rglob('*.jpg'))[::25]
    for f in files: (imgs/f.name).write_bytes(f.read_bytes())
    n_esc = round(0.5 * len(files))
    store, out = tmp_path/'rerank.sqlite', tmp_path/'p.csv'
    args = ['predict', imgs, '--classifier', d/'clf', '--budget', '0.5', '--mllm', 'openai:fake-vlm',
            '--store', store, '--candidates', '3', '-q']
    first_fps = {fingerprint(image_data_url(imgs/f.name, 768)) for f in files[:3]}
    dead = lambda fp, n: 'drop' if fp in first_fps else None  # a few images fail in the first run
    with FakeChatServer(rerank=True, fault=dead) as srv:
        rc, _, err = run(capsys, *args, '--base-url', srv.url, '--out', out)
        paid_first = srv.completed
    assert rc == 0, err
    p = read_table(out)
    asked = p[p.candidates.map(len) > 0]
    assert len(asked) == n_esc and asked.margin.max() <= p[p.candidates.map(len) == 0].margin.min()
    assert asked.candidates.map(len).eq(3).all()
    answered = asked[asked.source.map(from_mllm)]
    assert sum(paid_first.values()) == len(answered) > 0
    assert all(n in c for n, c in zip(answered[~answered.source.map(is_new_name)].name, answered[~answered.source.map(is_new_name)].candidates))
    assert (asked.source == 'classifier (no answer)').sum() == n_esc - len(answered)
    with FakeChatServer(rerank=True) as srv:
        rc, _, _ = run(capsys, *args, '--base-url', srv.url, '--out', tmp_path/'p2.csv')
        again = srv.requests
    assert rc == 0 and again == n_esc - len(answered)          # only what the first run did not get
    p2 = read_table(tmp_path/'p2.csv')
    assert p2.source.map(from_mllm).sum() == n_esc
    rc, _, err = run(capsys, 'predict', imgs, '--classifier', d/'clf', '--out', tmp_path/'p3.csv', '--budget', '0.3', '-q')
    assert rc == 1 and 'give --mllm and --store' in err
    rc, _, err = run(capsys, 'predict', imgs, '--classifier', d/'clf', '--out', tmp_path/'p3.csv', '--budget', '1.5')
    assert rc == 2 and 'between 0 and 1' in err

def test_check_embed_label_report_as_json(fitted, capsys, tmp_path):
    "`--json` on every command that reports: check, embed and label print one JSON object."
    d, cfg = fitted
    rc, out, _ = run(capsys, 'check', SAMPLE/'images', '--json', '-q')
    r = json.loads(out)
    assert rc == 0 and (r['images'], r['usable'], r['unusable']) == (306, 306, [])
    rc, out, _ = run(capsys, 'embed', SAMPLE/'images', '--model', cfg, '--random-init', '--out', tmp_path/'e.npz', '--json')
    r = json.loads(out)
    assert rc == 0 and r['images'] == 306 and r['from_cache'] + r['embedded'] == 306 and r['out'].endswith('e.npz')
    rc, out, _ = run(capsys, 'label', LABELS, '--mllm', f'replay:{LABELS}', '--store', tmp_path/'s.sqlite',
                     '--out', tmp_path/'l.csv', '--json')
    r = json.loads(out)
    assert rc == 0 and (r['requests'], r['done'], r['failed']) == (306, 306, []) and r['model']
    rc, out, _ = run(capsys, 'label', LABELS, '--mllm', f'replay:{LABELS}', '--store', tmp_path/'s.sqlite',
                     '--out', tmp_path/'l2.csv', '--json')
    assert rc == 0 and (json.loads(out)['requests'], json.loads(out)['skipped']) == (0, 306)

def test_predict_grow_adds_the_new_names_as_classes(fitted, capsys, tmp_path):
    "`near predict --budget --grow DIR`: the MLLM's new names become classes of a saved copy, with provenance."
    d, _ = fitted
    imgs = tmp_path/'new'
    imgs.mkdir()
    for f in sorted((SAMPLE/'images').rglob('*.jpg'))[::10]: (imgs/f.name).write_bytes(f.read_bytes())
    out, grown_dir = tmp_path/'p.csv', tmp_path/'grown'
    with FakeChatServer(rerank=True) as srv:
        rc, so, err = run(capsys, 'predict', imgs, '--classifier', d/'clf', '--budget', '1', '--mllm', 'openai:fake-vlm',
                          '--base-url', srv.url, '--store', tmp_path/'s.sqlite', '--out', out, '--grow', grown_dir, '--json')
    assert rc == 0, err
    r = json.loads(so)
    p = read_table(out)
    new = p[p.source.map(is_new_name)]
    assert (new.source == 'fake-vlm (new name)').all()   # the source names the MLLM's model
    assert len(new) > 0 and sorted(r['added_names']) == sorted(set(new.name))
    before, after = NearClassifier.from_pretrained(d/'clf'), NearClassifier.from_pretrained(grown_dir)
    assert after.names == before.names + r['added_names']
    prov = after.meta['added_names']
    assert {a['name'] for a in prov} == set(new.name) and all(a['model'] == 'openai:fake-vlm' for a in prov)
    assert sum(a['images'] for a in prov) == len(new)
    renamed = after.predict([imgs/os.path.basename(f) for f in new.path])
    assert [t[0][0] for t in renamed] == new.name.tolist()        # those images now named without a call
    rc, _, err = run(capsys, 'predict', imgs, '--classifier', d/'clf', '--out', tmp_path/'p2.csv', '--grow', tmp_path/'g2')
    assert rc == 1 and 'give --budget or --threshold' in err

def test_label_with_a_registered_labeler_scheme(capsys, tmp_path, monkeypatch):
    "A labeler added with `register_labeler` is reachable as `near label --mllm SCHEME:ARG`, options it ignores included."
    from near_nb.mllm import Answer, register_labeler
    class Constant:
        def __init__(self, name, **options):
            self.model, self.name, self.options = f'constant:{name}', name, options
        def settings(self): return {'answer': self.name}
        async def answer(self, req): return Answer(f'This is a {self.name}.')
    register_labeler('constant', Constant)  # stays registered in this process (no other test uses the name)
    rc, out, err = run(capsys, 'label', SAMPLE/'images', '--mllm', 'constant:Daisy', '--store', tmp_path/'s.sqlite',
                       '--out', tmp_path/'l.csv', '--json')
    r = json.loads(out)
    assert rc == 0 and (r['requests'], r['done'], r['model']) == (306, 306, 'constant:Daisy')
    labels = pd.read_csv(tmp_path/'l.csv')
    assert set(labels.response) == {'This is a Daisy.'} and set(labels.model) == {'constant:Daisy'}
    rc, _, err = run(capsys, 'label', SAMPLE/'images', '--mllm', 'nosuch:x', '--store', tmp_path/'s.sqlite',
                     '--out', tmp_path/'l2.csv')
    assert rc == 1 and "unknown labeler scheme 'nosuch'" in err and 'constant:...' in err

def test_fit_reads_the_model_its_embeddings_record(fitted, capsys, tmp_path):
    "`near fit --embeddings E` takes the backbone E records: no flag needed; a flag that disagrees names both."
    d, cfg = fitted
    rc, out, err = run(capsys, 'fit', LABELS, '--embeddings', d/'emb.npz', '--out', tmp_path/'c', '--epochs', '2',
                       '--similar', '0', '--json', '-q')
    assert rc == 0, err
    made_by = Backbone(str(cfg), None, random_init=True).model_id
    r = json.loads(out)
    assert r['backbone'] == made_by and r['random_weights'] is True
    assert 'warning: ' in err and made_by in err and 'random weights' in err   # never silent, whatever -q
    report = json.loads((tmp_path/'c'/'report.json').read_text())
    assert report['provenance']['backbone'] == made_by and report['provenance']['mllm']
    assert {'near_nb', 'commit', 'date', 'python'} <= set(report['provenance'])
    assert json.loads((tmp_path/'c'/'config.json').read_text())['backbone']['model_id'] == made_by
    rc, _, err = run(capsys, 'fit', LABELS, '--embeddings', d/'emb.npz', '--out', tmp_path/'c2', '--pretrained', 'openai')
    assert rc == 1 and f'holds {made_by} embeddings' in err and '/openai' in err

def test_names_with_control_characters_cannot_forge_a_line(capsys, tmp_path):
    "A file name holding a newline is printed escaped, on one line, in near check's summary."
    (tmp_path/'imgs').mkdir()
    Image.new('RGB', (20, 20), 'red').save(tmp_path/'imgs'/'ok.png')
    (tmp_path/'imgs'/'bad\nskipped forged.png: fine.png').write_bytes(b'\x89PNG not really')
    rc, out, _ = run(capsys, 'check', tmp_path/'imgs', '-q')
    assert rc == 1 and '2 images: 1 usable, 1 unusable' in out
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith('skipped ') and 'bad\\nskipped forged.png' in lines[0]
    rc, out, _ = run(capsys, 'check', tmp_path/'imgs', '--json')
    assert '\\\\n' in out and json.loads(out)['unusable'][0].count('\n') == 0

def test_embed_says_random_weights(fitted, capsys, tmp_path):
    d, cfg = fitted
    rc, out, err = run(capsys, 'embed', SAMPLE/'images'/'000.Pink_Primrose', '--model', cfg, '--random-init',
                       '--out', tmp_path/'e.npz', '--json', '-q')
    assert rc == 0 and json.loads(out)['random_weights'] is True and 'random weights' in err

def test_bench_support_is_the_old_spelling_of_merge_support(monkeypatch, capsys):
    "`near bench testbed --support Q` warns and sets merge_support; a typed --merge-support (even 0) wins."
    import near_nb.commands as commands
    class Stop(Exception): pass
    seen = []
    def bench(folder, **kw):  # the config the bench would run with; stop before it runs
        seen.append(kw['cfg'])
        raise Stop('stub')
    monkeypatch.setattr(commands, 'bench_testbed', bench)
    cases = [(['--support', '0.5'], 0.5, True), (['--support', 'none'], 0.0, False),
             (['--merge-support', '0.3', '--support', '0.5'], 0.3, True),
             (['--merge-support', '0', '--support', '0.5'], 0.0, True)]
    for i, (flags, want, warned) in enumerate(cases):
        main(['bench', 'testbed', str(sample_dir()), '-q', *flags])
        err = capsys.readouterr().err
        assert len(seen) == i + 1, (flags, err)                # the bench was reached with this run's config
        assert seen[-1].merge_support == want, (flags, seen[-1].merge_support)
        assert ('--support is deprecated' in err) == warned, (flags, err)
    with pytest.raises(SystemExit) as e:
        main(['bench', 'testbed', str(sample_dir()), '--support', '1'])
    assert e.value.code == 2                                   # a usage error: merge_support takes [0, 1)
    assert 'must be below 1' in capsys.readouterr().err
