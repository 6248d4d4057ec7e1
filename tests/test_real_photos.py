"Real photographs: the shipped sample and (where ../shared is beside the checkout) the CUB pool."
import numpy as np, pytest
from near_nb.data import ImageSet, load_image, sample
from near_nb.embed import Backbone
from near_nb.testing import tiny_clip_config
from conftest import ROOT

POOL = ROOT.parent/'shared'/'data'/'pool'/'cub50-test'/'manifest.csv'

def test_sample_images_all_load():
    s = sample()
    assert s.images.check(progress=False) == []
    im = load_image(s.images.files[0])
    assert im.mode == 'RGB' and min(im.size) >= 200

@pytest.mark.skipif(not POOL.exists(), reason=f'{POOL} is not beside this checkout')
def test_cub_pool_manifest_few_shot_and_embed(tmp_path):
    pool = ImageSet.from_manifest(POOL)
    assert len(pool) == 500 and len(pool.classnames) == 50
    sub = pool.few_shot(2, seed=0)
    assert np.bincount(sub.gt_class).tolist() == [2] * 50
    assert sub.check(progress=False) == []
    bb = Backbone(str(tiny_clip_config(tmp_path/'tinypool.json')), None, random_init=True)
    e = bb.embed_images(sub, cache=tmp_path/'c.sqlite', progress=False)
    assert e.valid.all() and e.n_computed == 100
