"""Generated noise and rooms (jeffreys.acoustics), shared by the augmentation and the
embedded corpus: spectral slopes and reverberation times measured independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from jeffreys.acoustics import coloured_noise, shoebox_rir


def test_coloured_noise_slopes():
    rng = np.random.default_rng(0)
    for colour, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        x = coloured_noise(1 << 16, rng, colour)
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)
        f, p = welch(x, fs=16000, nperseg=4096)
        band = (f > 100) & (f < 2000)  # below the leaky integrator's corner it flattens
        fitted = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.2), colour
    with pytest.raises(ValueError, match="colour must be one of"):
        coloured_noise(10, rng, "violet")


@pytest.mark.parametrize(("dims", "rt60"), [(((3.0, 3.0, 2.5), (10.0, 8.0, 4.0)), (0.3, 1.0)),  # the corpus's rooms
                                            (((1.0, 1.0, 2.0), (10.0, 10.0, 5.0)), (0.2, 0.8))])  # the augmentation's small ones
def test_room_decay_matches_its_rt60_and_is_seeded(dims, rt60):
    import pyroomacoustics as pra

    for seed in range(3):
        h = shoebox_rir(16000, np.random.default_rng(seed), dims=dims, rt60=rt60)
        assert np.array_equal(h, shoebox_rir(16000, np.random.default_rng(seed), dims=dims, rt60=rt60))
        assert np.max(np.abs(h)) == pytest.approx(1.0)
        nominal = h.size / 16000  # tail length ~ direct + 50 ms + 1.2 RT60
        measured = pra.experimental.measure_rt60(h, fs=16000, decay_db=30)
        assert 0.5 * rt60[0] < measured < 1.1 * rt60[1] and measured < nominal
