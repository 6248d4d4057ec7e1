"""The answer parser against the published parses of the test bed's bird and car answers (the flower sample is
checked in nbs/02a_parse.ipynb). Needs `../shared/data/testbed` beside the checkout; skipped, saying so,
without it."""
import json
import pandas as pd
import pytest
from conftest import ROOT
from near_nb.parse import parse_agreement

TESTBED = ROOT.parent/'shared'/'data'/'testbed'

def _agreement(ds:str) -> dict:
    "`parse_agreement` on one test-bed data set's raw answers and published names (skips when it is absent)."
    labels = TESTBED/ds/'labels.csv'
    if not labels.exists():
        pytest.skip(f'{labels} is not beside this checkout (the test bed sits in ../shared/data)')
    df = pd.read_csv(labels, keep_default_na=False)
    return parse_agreement(df.response, df.names.map(json.loads))

def test_bird_answers_agree_with_published_parses():
    a = _agreement('bird200')
    assert a['answers'] == 600, a
    assert a['published_first_in_ours'] >= 98 and a['our_first_words_in_published'] >= 98, a

def test_car_answers_agree_with_published_parses():
    a = _agreement('car196')
    assert a['answers'] == 588, a
    assert a['our_first_words_in_published'] >= 88.5, a
