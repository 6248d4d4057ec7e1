"Each import and export on the shipped sample: ImageFolder trees, Hugging Face datasets, FiftyOne, COCO-style JSON, CSV."
import json, os
import numpy as np, pandas as pd, pytest
from PIL import Image
from near_nb.core import NearError, sha256_file
from near_nb.data import sample
from near_nb.formats import (from_imagefolder, from_hf_dataset, from_fiftyone, to_imagefolder, to_coco, to_fiftyone,
                             write_table, read_table)

SAMPLE = sample().images.root

@pytest.fixture(scope='module')
def named():
    "The shipped sample named by its class folders, with a made-up confidence per image."
    t = from_imagefolder(SAMPLE/'images')
    return t.assign(name=t.names.str[0], score=np.linspace(0.2, 0.9, len(t)).round(4), mllm='some model', response='an answer')

def test_imagefolder_import(named):
    labels = pd.read_csv(SAMPLE/'labels.csv')
    assert len(named) == len(labels) == 306 and named.name.nunique() == 102
    want = {str(SAMPLE/f): f.split('/')[1] for f in labels.file}
    assert dict(zip(named.path, named.name)) == want
    assert all(len(h) == 64 for h in named.sha256)

def test_imagefolder_export_links_and_copies(named, tmp_path):
    for link in ('symlink', 'hardlink', 'copy'):
        root = to_imagefolder(named, tmp_path/link, link=link)
        back = from_imagefolder(root)
        assert sorted(zip(back.sha256, back.names.str[0])) == sorted(zip(named.sha256, named.name))
        f = next(root.rglob('*.jpg'))
        src = next(q for q in named.path if os.path.basename(q) == f.name)
        assert f.is_symlink() == (link == 'symlink')
        assert os.path.samefile(f, src) == (link != 'copy')   # a link reaches the very file; a copy is another
    two = pd.DataFrame({'path': [named.path[0], named.path[0]], 'sha256': ['aaaaaaaa1', 'bbbbbbbb2'], 'name': ['x', 'x']})
    assert len(list(to_imagefolder(two, tmp_path/'clash').rglob('*.jpg'))) == 2   # same file name twice: both kept
    unnamed = named.assign(name=[''] * 300 + named.name[300:].tolist())
    assert len(list(to_imagefolder(unnamed, tmp_path/'some').rglob('*.jpg'))) == 6
    with pytest.raises(NearError, match='link must be'): to_imagefolder(named, tmp_path/'x', link='move')

def test_hf_datasets_import(named, tmp_path):
    datasets = pytest.importorskip('datasets')
    six = named.iloc[::51].reset_index(drop=True)
    classes = sorted(set(six.name))
    feats = datasets.Features({'image': datasets.Image(), 'label': datasets.ClassLabel(names=classes), 'note': datasets.Value('string')})
    ds = datasets.Dataset.from_dict({'image': six.path.tolist(), 'label': [classes.index(n) for n in six.name],
                                     'note': six.name.str.upper().tolist()}, features=feats)
    ds.save_to_disk(tmp_path/'hf')
    got = from_hf_dataset(tmp_path/'hf', tmp_path/'imgs')
    assert got.names.str[0].tolist() == six.name.tolist() and got.sha256.tolist() == six.sha256.tolist()
    assert all(Image.open(p).size == Image.open(q).size for p, q in zip(got.path, six.path))
    by_string = from_hf_dataset(datasets.DatasetDict({'train': ds}), tmp_path/'imgs2', label_col='note')
    assert by_string.names.str[0].tolist() == six.name.str.upper().tolist()
    decoded = datasets.Dataset.from_dict({'image': [Image.open(p) for p in six.path[:2]]})   # PIL images, no file behind them
    assert [len(n) for n in from_hf_dataset(decoded, tmp_path/'imgs3', label_col=None).names] == [0, 0]
    with pytest.raises(NearError, match="no 'species' column"): from_hf_dataset(ds, tmp_path/'x', label_col='species')

def test_coco_export(named, tmp_path):
    coco = to_coco(named, tmp_path/'c.json')
    assert json.loads((tmp_path/'c.json').read_text()) == coco
    cats = {c['id']: c['name'] for c in coco['categories']}
    assert len(cats) == 102 and len(coco['images']) == len(coco['annotations']) == 306
    root = coco['info']['data_root']
    files = {i['id']: i['file_name'] for i in coco['images']}
    assert not any(os.path.isabs(f) for f in files.values())   # relative to the data root `info` names: it travels
    assert {os.path.join(root, files[a['image_id']]): cats[a['category_id']] for a in coco['annotations']} == dict(zip(named.path, named.name))
    assert [a['score'] for a in coco['annotations']] == named.score.tolist()
    assert (coco['images'][0]['width'], coco['images'][0]['height']) == Image.open(named.path[0]).size
    part = to_coco(named.assign(name=[''] * 6 + named.name[6:].tolist()), tmp_path/'p.json')
    assert len(part['images']) == 306 and len(part['annotations']) == 300

def test_fiftyone_export_and_import(named, tmp_path):
    d = to_fiftyone(named, tmp_path/'fo')
    lab = json.loads((d/'labels.json').read_text())
    assert sorted(lab['classes']) == sorted(set(named.name)) and len(lab['labels']) == 306
    first = lab['labels'][os.path.splitext(os.path.basename(named.path[0]))[0]]   # keyed by the file stem in data/
    assert lab['classes'][first['label']] == named.name[0] and first['confidence'] == named.score[0]
    assert first['attributes'] == {'mllm': 'some model', 'response': 'an answer', 'sha256': named.sha256[0]}
    back = from_fiftyone(d)
    assert back.names.tolist() == named.names.tolist()
    assert [sha256_file(p) for p in back.path] == named.sha256.tolist()   # the images themselves, copied into data/
    # what fiftyone's exporter writes with abs_paths=True: labels keyed by path, label strings, no classes
    (tmp_path/'fo2').mkdir()
    (tmp_path/'fo2'/'labels.json').write_text(json.dumps({'classes': None, 'labels': {p: n for p, n in zip(named.path, named.name)}}))
    assert from_fiftyone(tmp_path/'fo2').names.str[0].tolist() == named.name.tolist()
    with pytest.raises(NearError, match='no readable labels.json'): from_fiftyone(tmp_path)

def test_fiftyone_reads_the_export(named, tmp_path):
    "With fiftyone installed, its own importer reads `to_fiftyone`'s folder (no database needed)."
    foud = pytest.importorskip('fiftyone.utils.data')
    d = to_fiftyone(named, tmp_path/'fo')
    with foud.FiftyOneImageClassificationDatasetImporter(str(d)) as imp: got = {sha256_file(p): l.label for p, _, l in imp}
    assert got == dict(zip(named.sha256, named.name))

def test_csv_and_parquet(named, tmp_path):
    t = named.assign(top_names=named.names, top_scores=[[s] for s in named.score])
    for f in ('t.csv', 't.parquet'):
        back = read_table(write_table(t, tmp_path/f))
        assert back.top_names.tolist() == t.top_names.tolist() and back.score.tolist() == t.score.tolist()
        assert back.name.tolist() == t.name.tolist()

def test_exporters_registry_lists_the_formats_and_names_the_fix():
    from near_nb.core import Registry
    from near_nb.formats import EXPORTERS, register_exporter
    assert isinstance(EXPORTERS, Registry)
    assert {'coco', 'csv', 'fiftyone', 'imagefolder'} <= set(EXPORTERS) and EXPORTERS['coco'] is to_coco
    with pytest.raises(NearError, match="register_exporter.*entry-point group 'near_nb.exporters'"):
        EXPORTERS.get_or_fail('yolo-but-not-installed')
    fn = register_exporter('test-only-format', lambda df, out, **kw: out)
    assert EXPORTERS.get_or_fail('test-only-format') is fn

def test_near_export_uses_an_installed_exporter_plugin(named, tmp_path, monkeypatch, capsys):
    "An installed package declares a format under near_nb.exporters: `near export --to` offers and runs it (in-process)."
    import sys
    from near_nb.cli import main   # the `near` command
    from near_nb.formats import EXPORTERS
    site = tmp_path/'site'
    info = site/'near_tsv_plugin-0.1.dist-info'
    info.mkdir(parents=True)
    (info/'METADATA').write_text('Metadata-Version: 2.1\nName: near-tsv-plugin\nVersion: 0.1\n')
    (info/'entry_points.txt').write_text('[near_nb.exporters]\ntsv = near_tsv_plugin:to_tsv\n')
    (site/'near_tsv_plugin.py').write_text(
        'from pathlib import Path\n'
        'def to_tsv(df, out, name_col="name", **options):\n'
        '    Path(out).write_text("".join(f"{p}\\t{n}\\n" for p, n in zip(df.path, df[name_col])))\n')
    table = write_table(named.iloc[:5][['path', 'name']], tmp_path/'named.csv')
    monkeypatch.syspath_prepend(str(site))   # as if pip had installed it
    monkeypatch.delitem(sys.modules, 'near_tsv_plugin', raising=False)
    EXPORTERS.refresh()
    try:
        assert main(['export', str(table), '--to', 'tsv', '--out', str(tmp_path/'named.tsv')]) == 0
        want = [f'{p}\t{n}' for p, n in zip(named.path[:5], named.name[:5])]
        assert (tmp_path/'named.tsv').read_text().splitlines() == want
        capsys.readouterr()
        with pytest.raises(SystemExit) as e: main(['export', str(table), '--to', 'nope', '--out', str(tmp_path/'x')])
        assert e.value.code == 2 and "'tsv'" in capsys.readouterr().err  # the plugin is among the choices argparse lists
    finally:
        EXPORTERS.refresh()   # read again (without the plugin) on next use
        EXPORTERS._items.pop('tsv', None)

def _fiftyone_media_map(data:str) -> dict:
    """What fiftyone's `ImportPathsMixin._load_data_map(data, ignore_exts=True, recursive=True)` builds: each file
    under `data`, keyed by its path relative to `data` without the extension (fiftyone/utils/data/importers.py)."""
    out = {}
    for dirpath, _, files in os.walk(data):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), data)
            out[os.path.splitext(rel)[0]] = os.path.join(dirpath, f)
    return out

def test_fiftyone_layout_is_the_importers(named, tmp_path):
    """Without fiftyone: every label's key names one image in data/ as fiftyone's importer looks it up, and the
    folder travels (moved elsewhere, it still holds every image)."""
    twice = pd.concat([named.iloc[:3], named.iloc[:1].assign(sha256='f' * 64)], ignore_index=True)  # one file name twice
    d = to_fiftyone(twice, tmp_path/'fo', link='copy')
    moved = tmp_path/'elsewhere'
    os.rename(d, moved)
    lab = json.loads((moved/'labels.json').read_text())
    media = _fiftyone_media_map(str(moved/'data'))
    assert sorted(lab['labels']) == sorted(media) and len(media) == 4
    assert all(os.path.isfile(media[k]) and not os.path.islink(media[k]) for k in lab['labels'])
    assert sorted(lab['classes'][v['label']] for v in lab['labels'].values()) == sorted(twice.name)
    assert {sha256_file(media[k]) for k in media} == set(named.sha256[:3])

def test_exports_never_fail_half_way_on_long_names(named, tmp_path):
    "A 300-character name and a 250-byte file name: every export writes names that fit, and re-reads them."
    src = tmp_path/('y' * 250 + '.jpg')
    src.write_bytes(open(named.path[0], 'rb').read())
    odd = pd.DataFrame({'path': [str(src), named.path[1]], 'name': ['=' + 'x' * 300, named.name[1]], 'score': [0.5, 0.6]})
    tree = to_imagefolder(odd, tmp_path/'tree', link='copy')
    assert all(len(f.name.encode()) <= 255 for f in tree.rglob('*'))
    assert sorted(from_imagefolder(tree).sha256) == sorted([named.sha256[0], named.sha256[1]])
    fo = to_fiftyone(odd, tmp_path/'fo')
    assert len(from_fiftyone(fo)) == 2 and all(len(f.name.encode()) <= 255 for f in (fo/'data').iterdir())
    back = read_table(write_table(odd, tmp_path/'odd.csv'))
    assert back.name.tolist() == odd.name.tolist()   # a formula-like name is escaped in the file, and comes back
    assert "'=xxx" in (tmp_path/'odd.csv').read_text()

def test_an_export_that_fails_leaves_the_old_one(named, tmp_path):
    "An image gone mid-export: the error names it, the earlier export stays whole, no partial folder beside it."
    to_imagefolder(named.iloc[:3], tmp_path/'tree')
    gone = named.iloc[:3].assign(path=[named.path[0], named.path[1], str(tmp_path/'gone.jpg')])
    with pytest.raises(FileNotFoundError, match='gone.jpg'): to_imagefolder(gone, tmp_path/'tree', link='copy')
    assert len(list((tmp_path/'tree').rglob('*.jpg'))) == 3 and all(f.is_symlink() for f in (tmp_path/'tree').rglob('*.jpg'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['tree']

def test_coco_sizes_only_from_files_that_pass_the_caps(named, tmp_path):
    """COCO's width and height come from the header of a regular file within the pixel caps: a FIFO (which would
    hang Image.open) and a 1 x 1,000,000 PNG (which passes a pixel count but not the aspect cap) get none, at once."""
    os.mkfifo(tmp_path/'pipe.jpg')
    Image.new('L', (1, 1_000_000)).save(tmp_path/'thin.png')
    df = pd.DataFrame({'path': [named.path[0], str(tmp_path/'pipe.jpg'), str(tmp_path/'thin.png')], 'name': ['a', 'b', 'c']})
    coco = to_coco(df, tmp_path/'c.json')
    assert [(i['width'], i['height']) for i in coco['images']] == [Image.open(named.path[0]).size, (None, None), (None, None)]
