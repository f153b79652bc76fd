"""Test-suite settings.

Under CI (``CI`` set) hypothesis runs derandomised: the same examples every run, so a
submission's result does not depend on the draw. Locally it explores new examples each run
(that is how a subnormal-alpha NaN in JeffreysLoss was found).
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def fresh_library():
    """Forget the loaded loss kernel before and after (the test changes how it is found)."""
    from jeffreys.losses import _native

    _native._library.cache_clear()
    yield
    _native._library.cache_clear()
