"""Test-suite settings.

Under CI (``CI`` set) hypothesis runs derandomised: the same examples every run, so a
submission's result does not depend on the draw. Locally it explores new examples each run
(that is how a subnormal-alpha NaN in JeffreysLoss was found).
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
