"""Options added later, at their neutral value, change no stamp and block no resume: an
upgrade neither retrains finished runs nor refuses to continue interrupted ones."""

from __future__ import annotations

import copy
from importlib import resources

from jeffreys.config import to_dict
from jeffreys.experiment.stages import digest
from jeffreys.train import _config_changes, comparable, load_train_config

# Written out, not derived from the code under test: the keys a config saved before them lacks.
ADDED = {"model": ["cmn_window", "vad", "vad_energy_threshold", "vad_energy_mean_scale", "vad_frames_context",
                   "vad_proportion_threshold"],
         "data": ["check_files"]}


def _config(**overrides):
    path = resources.files("jeffreys") / "conf" / "demo.yaml"
    return to_dict(load_train_config(path, {"data.train": "/corpus/train", **overrides}))


def _as_saved_before(config: dict) -> dict:
    old = copy.deepcopy(config)
    for section, keys in ADDED.items():
        for k in keys:
            del old[section][k]
    return old


def test_a_config_saved_before_the_options_has_the_same_stamp_and_resumes():
    new = _config()
    old = _as_saved_before(new)
    assert digest(comparable(new)) == digest(comparable(old)) == digest(old)
    assert _config_changes(comparable(old), comparable(new)) == []


def test_setting_an_option_changes_the_stamp():
    old = _as_saved_before(_config())
    for override in ({"model.vad": "energy"}, {"model.feature_norm": "sliding"}, {"model.cmn_window": 200}):
        new = _config(**override)
        assert digest(comparable(new)) != digest(old), override
        assert _config_changes(comparable(old), comparable(new)), override


def test_a_resumed_run_may_change_which_files_are_checked():
    from jeffreys.train import RESUMABLE_CHANGES

    changed = _config_changes(comparable(_config()), comparable(_config(**{"data.check_files": "none"})))
    assert changed == ["data.check_files"] and set(changed) <= RESUMABLE_CHANGES
