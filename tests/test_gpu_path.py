"""Devices, precisions and decoders (issue 15). CI has no GPU: the casting code runs in bf16 on the CPU and the GPU
decoder's tensor path runs with CPU tensors; the CUDA tests run where a GPU is present and are skipped otherwise."""
import numpy as np
import pytest
import torch
from PIL import Image
import near_nb.embed as embed
from near_nb.classifier import NearClassifier
from near_nb.data import ImageSet, load_image, sample
from near_nb.embed import Backbone, input_dtype
from near_nb.near import NearConfig
from near_nb.testing import register_tiny_clip
from near_nb.tune import fit_near_tower, tower_features

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (none on this machine)')
# Tolerances, as cosine similarity between L2-normalised embeddings of the same image:
SAME_PATH = 0.9999  # the GPU decoder's tensor path (torchvision decode + antialiased tensor resize) vs Pillow's
LOW_PRECISION = 0.999  # bf16 / fp16 weights vs fp32, same inputs


@pytest.fixture(scope='module')
def tiny224():
    "A tiny random-weight CLIP with ViT-B-16's input size, so that real photos are really resized and cropped."
    return register_tiny_clip('near-tiny-224', image_size=224, width=64, layers=2)


@pytest.fixture(scope='module')
def photos():
    "40 real photographs (JPEG, about 500x500) of the shipped sample."
    return sample().images.files[:40]


def cosines(a, b): return (a * b).sum(1)


def test_bf16_on_cpu_casts_to_the_conv_weight(tiny224, photos):
    "The casting bug of fp16 on CUDA, caught on the CPU: open_clip's first parameter is fp32, its conv1 bf16."
    b16 = Backbone(tiny224, None, random_init=True, precision='bf16').load()
    assert next(b16.model.parameters()).dtype == torch.float32
    assert input_dtype(b16.model.visual) == b16.model.visual.conv1.weight.dtype == torch.bfloat16
    b32 = Backbone(tiny224, None, random_init=True)
    kw = dict(cache=False, progress=False, num_workers=0)
    e16, e32 = b16.embed_images(photos, **kw), b32.embed_images(photos, **kw)
    assert e16.valid.all() and e16.emb.dtype == np.float32
    assert cosines(e16.emb, e32.emb).min() > LOW_PRECISION
    t16, t32 = b16.embed_text(['pink primrose', 'gazania']), b32.embed_text(['pink primrose', 'gazania'])
    assert cosines(t16, t32).min() > LOW_PRECISION


def test_bf16_classifier_predicts_from_images(tiny224, photos):
    "NearClassifier.predict on image files through a bf16 backbone: the same names as in fp32."
    b32 = Backbone(tiny224, None, random_init=True)
    emb = b32.embed_images(photos, cache=False, progress=False, num_workers=0).emb
    w = emb[:5] / np.linalg.norm(emb[:5], axis=1, keepdims=True)
    names = [f'name {k}' for k in range(5)]
    p32 = NearClassifier(names, w, backbone=b32).predict(photos[:5])
    p16 = NearClassifier(names, w, backbone=Backbone(tiny224, None, random_init=True, precision='bf16')).predict(photos[:5])
    assert [p[0][0] for p in p16] == [p[0][0] for p in p32] == names  # each prototype's own image
    pil = [load_image(f) for f in photos[:3]]
    clf16 = NearClassifier(names, w, backbone=Backbone(tiny224, None, random_init=True, precision='bf16'))
    assert [p[0][0] for p in clf16.predict(pil)] == names[:3]


def test_unknown_precision_is_refused(tiny224):
    with pytest.raises(ValueError, match='one of'): Backbone(tiny224, None, random_init=True, precision='half')


def test_gpu_decoder_matches_pillow_on_real_photos(tiny224, photos, tmp_path):
    "decode='gpu' (run with CPU tensors here) gives Pillow's embeddings within SAME_PATH, with or without draft mode."
    bb = Backbone(tiny224, None, random_init=True)
    kw = dict(cache=False, progress=False, num_workers=0, batch_size=16)
    pil, gpu = bb.embed_images(photos, decode='pil', **kw), bb.embed_images(photos, decode='gpu', **kw)
    assert pil.valid.all() and gpu.valid.all() and pil.sha256 == gpu.sha256
    assert cosines(pil.emb, gpu.emb).min() > SAME_PATH
    big = tmp_path/'big.jpg'  # a large JPEG decodes in draft mode (1/4 scale) on the Pillow path
    load_image(photos[0]).resize((2000, 1650), Image.BICUBIC).save(big, quality=95)
    a, b = bb.embed_images([big], decode='pil', **kw), bb.embed_images([big], decode='gpu', **kw)
    assert cosines(a.emb, b.emb).min() > SAME_PATH


def test_gpu_decoder_falls_back_for_other_files(tiny224, photos, tmp_path):
    "PNG, CMYK and rotated JPEGs go through the robust loader; corrupt files are reported as with Pillow."
    src = load_image(photos[0])
    src.save(tmp_path/'a.png')
    src.convert('CMYK').save(tmp_path/'b_cmyk.jpg')
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow's loader turns it upright, raw decode_jpeg would not
    src.save(tmp_path/'c_rotated.jpg', exif=exif)
    (tmp_path/'d_truncated.jpg').write_bytes(photos[1].read_bytes()[:3000])
    (tmp_path/'e_notjpeg.jpg').write_text('hello')
    src.save(tmp_path/'f_plain.jpg', quality=95)
    bb = Backbone(tiny224, None, random_init=True)
    kw = dict(cache=False, progress=False, num_workers=0)
    pil = bb.embed_images(ImageSet.from_folder(tmp_path), decode='pil', **kw)
    gpu = bb.embed_images(ImageSet.from_folder(tmp_path), decode='gpu', **kw)
    assert gpu.valid.tolist() == pil.valid.tolist() == [True, True, True, False, False, True]
    assert [e.reason for e in gpu.errors] == [e.reason for e in pil.errors]
    assert 'truncated' in gpu.errors[0].reason and 'not an image' in gpu.errors[1].reason
    ok = gpu.valid
    assert cosines(gpu.emb[ok], pil.emb[ok]).min() > SAME_PATH


def test_each_file_is_read_once(tiny224, photos, monkeypatch, tmp_path):
    "Hashing, the cache lookup and decoding share one read of each file; a second run reads each file once more."
    reads = []
    real = embed.read_file
    monkeypatch.setattr(embed, 'read_file', lambda p, *a, **k: reads.append(str(p)) or real(p, *a, **k))
    monkeypatch.setattr(embed, 'sha256_file', lambda *a, **k: pytest.fail('a second read to hash a file'))
    files = photos[:10] + photos[:2]  # two duplicates: encoded once each
    bb = Backbone(tiny224, None, random_init=True)
    for decode in ('pil', 'gpu'):
        reads.clear()
        cache = tmp_path/f'{decode}.sqlite'
        e = bb.embed_images(files, cache=cache, progress=False, num_workers=0, decode=decode)
        assert sorted(reads) == sorted(map(str, files)) and (e.n_computed, e.n_cached) == (12, 0)
        reads.clear()
        again = bb.embed_images(files, cache=cache, progress=False, num_workers=0, decode=decode)
        assert sorted(reads) == sorted(map(str, files)) and (again.n_computed, again.n_cached) == (0, 12)
        np.testing.assert_array_equal(again.emb, e.emb)


@CUDA
@pytest.mark.parametrize('precision', ['fp16', 'bf16', 'fp32'])
def test_cuda_embeddings_match_cpu(tiny224, photos, precision):
    "On CUDA, every precision and both decoders give the CPU's fp32 embeddings within LOW_PRECISION."
    kw = dict(cache=False, progress=False, num_workers=2)
    ref = Backbone(tiny224, None, random_init=True, device='cpu').embed_images(photos, decode='pil', **kw)
    bb = Backbone(tiny224, None, random_init=True, device='cuda', precision=precision)
    for decode in ('gpu', 'pil'):
        e = bb.embed_images(photos, decode=decode, **kw)
        assert e.valid.all() and cosines(e.emb, ref.emb).min() > LOW_PRECISION, (precision, decode)
    t = bb.embed_text(['pink primrose'])
    assert cosines(t, Backbone(tiny224, None, random_init=True, device='cpu').embed_text(['pink primrose']))[0] > LOW_PRECISION


@CUDA
def test_cuda_classifier_predicts(tiny224, photos):
    bb = Backbone(tiny224, None, random_init=True, device='cuda')
    emb = bb.embed_images(photos[:4], cache=False, progress=False).emb
    clf = NearClassifier(['a', 'b', 'c', 'd'], emb, backbone=bb)
    assert [p[0][0] for p in clf.predict(photos[:4])] == ['a', 'b', 'c', 'd']


def test_tower_modes_and_wise_ft_in_bf16_on_cpu(tiny224, photos):
    "Modes 2 and 3 and WiSE-FT with a bf16 backbone on the CPU run the casting and autocast code that CUDA runs."
    bb = Backbone(tiny224, None, random_init=True, precision='bf16')
    train = photos[:16]
    names = [f'name {k}' for k in range(4)]
    own = [[k % 4] for k in range(len(train))]
    cfg = NearConfig(epochs=2, warmup=1, batch_size=8, lr=1e-3)
    for n_top in (1, None):
        clf, res = fit_near_tower(bb, train, own, names, cfg=cfg, n_top=n_top, wise=0.5)
        assert len(res.refined) == len(train) and clf.visual_state is not None
        tuned = clf.visual_state['conv1.weight'] if n_top is None else clf.visual_state['proj']
        zero_shot = bb.model.visual.state_dict()['conv1.weight' if n_top is None else 'proj']
        assert (tuned.float() - zero_shot.float()).abs().max() > 0  # the tower was trained
        assert input_dtype(bb.model.visual) == torch.bfloat16  # and the backbone is back as it was
        assert all(len(p) == 1 for p in clf.predict(photos[16:20]))


def test_tower_features_stream_the_pixels(tiny224, photos, monkeypatch):
    "Mode 2's setup streams batches: never more than one batch of pixels, activations for every readable image."
    bb = Backbone(tiny224, None, random_init=True).load()
    seen = []
    real = Backbone.pixel_batches
    def spy(self, *a, **k):
        for idx, x, bad in real(self, *a, **k):
            seen.append(len(x))
            yield idx, x, bad
    monkeypatch.setattr(Backbone, 'pixel_batches', spy)
    emb, acts, ok, errs = tower_features(bb, photos[:20], n_top=1, batch_size=8)
    assert seen == [8, 8, 4] and len(ok) == 20 and errs == []
    assert acts.shape[0] == 20 and emb.shape == (20, bb.model.visual.output_dim)


@CUDA
@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_cuda_tower_modes(tiny224, photos, precision):
    bb = Backbone(tiny224, None, random_init=True, device='cuda', precision=precision)
    names = [f'name {k}' for k in range(4)]
    own = [[k % 4] for k in range(16)]
    for n_top in (1, None):
        clf, _ = fit_near_tower(bb, photos[:16], own, names, cfg=NearConfig(epochs=2, warmup=1, batch_size=8), n_top=n_top, wise=0.5)
        assert all(len(p) == 1 for p in clf.predict(photos[16:20]))
