"""How many held-out samples each domain's quickstart simulates (physgan.quickstart.heldout_size)."""

from __future__ import annotations

from physgan.domains.base import get_domain
from physgan.quickstart import heldout_size


def test_default_is_a_quarter_of_the_training_set_within_200_to_2000():
    assert heldout_size({}, 8000) == 2000
    assert heldout_size({}, 4000) == 1000
    assert heldout_size({}, 100) == 200
    assert heldout_size({}, 100000) == 2000


def test_nbody_quickstart_holds_out_as_many_fields_as_it_trains_on():
    """The density P(k) needs ~4000 fields to be measured to a few per cent (bench/RESULTS.md §11)."""
    qs = get_domain("nbody").quickstart
    n_train = int(qs["make"]["n"])
    assert heldout_size(qs, n_train) == n_train == 4000
    assert heldout_size(qs, 300) == 300  # a small --n keeps the ratio, not the cap
