"Tests are offline and never touch the user's caches."
import os, tempfile
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
if 'NEAR_NB_HOME' not in os.environ: os.environ['NEAR_NB_HOME'] = tempfile.mkdtemp(prefix='near_nb_test_')

from pathlib import Path
import numpy as np, pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def photos(tmp_path):
    "A folder of small real-looking RGB photos (noise with structure), sorted names 00.jpg .. 11.jpg."
    rng = np.random.default_rng(0)
    d = tmp_path/'photos'; d.mkdir()
    for i in range(12):
        a = (rng.random((60 + i, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(d/f'{i:02d}.jpg', quality=90)
    return d
