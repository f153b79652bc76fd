"""Offline augmentation: cached filterbanks against the front-end computed directly, the same
bytes whatever the number of workers, one build shared, crops as the online chunks are."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from jeffreys.audio import load_utterance
from jeffreys.data import feature_cache
from jeffreys.data.augment import AugmentConfig, Augmenter
from jeffreys.data.dataset import TrainDataset
from jeffreys.errors import InputError
from jeffreys.features import Fbank
from train_helpers import make_datadir, tiny_overrides

SR = 16000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc")
    data = make_datadir(root, speakers=3, utts=2)
    aug = Augmenter(AugmentConfig(prob=0.5, simulated_rirs=2, cache_dir=str(root / "rirs")), SR)
    ds = TrainDataset(data, chunk_seconds=0.5, augment=aug)
    fbank = Fbank(num_mel_bins=20, mean_norm=False)
    return root, ds, aug, fbank


def test_clean_copy_is_the_front_end_and_copies_are_augmented(setup):
    root, ds, aug, fbank = setup
    d = feature_cache.build(ds, aug, fbank, copies=2, directory=root / "c1", jobs=1)
    cache = feature_cache.FeatureCache(d, ds.utts)
    for i, utt in enumerate(ds.utts):
        wave = torch.from_numpy(load_utterance(ds.data, utt, SR))
        want = fbank(wave).numpy()
        start, n = cache.index[i, 0]
        assert n == fbank.num_frames(wave.shape[0]) == want.shape[0]
        np.testing.assert_allclose(np.asarray(cache.feats[start:start + n], dtype=np.float32), want, atol=0.02, rtol=2e-3)
        for c in (1, 2):  # augmented copies: same length, other features
            s2, n2 = cache.index[i, c]
            assert n2 == n and np.abs(np.asarray(cache.feats[s2:s2 + n], np.float32) - want).mean() > 0.05


def test_workers_give_the_same_bytes_and_one_build_is_shared(setup):
    root, ds, aug, fbank = setup
    one = feature_cache.build(ds, aug, fbank, copies=2, directory=root / "w1", jobs=1)
    two = feature_cache.build(ds, aug, fbank, copies=2, directory=root / "w2", jobs=2)
    assert one.name == two.name  # the key is the content's, not the place's
    assert (one / "feats.f16").read_bytes() == (two / "feats.f16").read_bytes()
    assert np.array_equal(np.load(one / "index.npy"), np.load(two / "index.npy"))
    before = (one / "feats.f16").stat().st_mtime_ns
    assert feature_cache.build(ds, aug, fbank, copies=2, directory=root / "w1", jobs=2) == one
    assert (one / "feats.f16").stat().st_mtime_ns == before  # reused, not rebuilt
    assert not [p for p in (root / "w1").iterdir() if p.name.startswith(f".{one.name}.") and p.is_dir()]
    other = feature_cache.build(ds, aug, fbank, copies=1, directory=root / "w1", jobs=1)
    assert other != one  # another number of copies is another cache


def test_crops_are_mean_normalised_and_wrap_short_utterances(setup):
    root, ds, aug, fbank = setup
    cache = feature_cache.FeatureCache(feature_cache.build(ds, aug, fbank, 2, root / "c1", jobs=1), ds.utts)
    utt = ds.utts[0]
    rng = np.random.default_rng(0)
    x = cache.crop(utt, 30, rng, augment_prob=0.0)
    assert x.shape == (30, 20) and x.dtype == torch.float32
    torch.testing.assert_close(x.mean(0), torch.zeros(20), atol=1e-5, rtol=0)
    start, n = cache.index[0, 0]
    long = cache.crop(utt, n + 7, np.random.default_rng(1), augment_prob=0.0)  # longer than the utterance
    raw = np.asarray(cache.feats[start:start + n], np.float32)
    wrapped = np.concatenate([raw, raw[:7]])
    torch.testing.assert_close(long, torch.from_numpy(wrapped - wrapped.mean(0)), atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="feature cache of other utterances"):
        feature_cache.FeatureCache(cache_dir := feature_cache.build(ds, aug, fbank, 2, root / "c1", jobs=1), [*ds.utts, "nobody"])
    assert cache_dir.is_dir()


@pytest.mark.parametrize("norm", ["level", "none"])
def test_crops_follow_the_models_feature_norm(setup, norm):
    """A crop served to a level-normalised (or raw) model is what that model's own front-end
    makes of the chunk: the online Fbank with the same switch, over the same frames."""
    root, ds, aug, fbank = setup
    cache = feature_cache.FeatureCache(feature_cache.build(ds, aug, fbank, 2, root / "c1", jobs=1), ds.utts, norm)
    start, n = cache.index[1, 0]
    x = cache.crop(ds.utts[1], n, np.random.default_rng(0), augment_prob=0.0)  # the whole clean utterance
    online = Fbank(num_mel_bins=20, mean_norm=False, level_norm=norm == "level")
    want = online(torch.from_numpy(load_utterance(ds.data, ds.utts[1], SR)))
    torch.testing.assert_close(x, want, atol=0.03, rtol=0)  # float16 storage
    if norm == "level":
        assert abs(float(x.mean())) < 1e-4 and x.mean(0).abs().max() > 0.1  # the spectral shape is kept


def test_training_on_cached_features(tmp_path):
    from jeffreys.train import Trainer, load_train_config

    data = make_datadir(tmp_path / "d")
    path = tmp_path / "c.yaml"
    path.write_text("")
    cfg = load_train_config(path, tiny_overrides(data, "data.augment.prob=0.5", "data.augment.simulated_rirs=2",
                                                 f"data.augment.cache_dir={tmp_path / 'rirs'}", "data.offline_copies=2",
                                                 f"data.feature_cache={tmp_path / 'feats'}", steps=3))
    trainer = Trainer(cfg, tmp_path / "exp")
    x, label = trainer.dataset[(0, 0)]
    assert x.shape == (trainer.model.fbank.num_frames(int(0.5 * SR)), 16)  # features, not samples
    trainer.run()
    assert (tmp_path / "exp" / "model.pt").is_file()
    for bad, message in (("data.augment.speed_perturb=true", "speed perturbation needs waveform chunks"),
                         ("data.augment.prob=0.0", r"offline augmentation needs augmentation: data.augment.prob must be above 0")):
        with pytest.raises(InputError, match=message):
            Trainer(load_train_config(path, tiny_overrides(data, "data.augment.prob=0.5", "data.offline_copies=1", bad,
                                                           f"data.feature_cache={tmp_path / 'feats'}", steps=1)), tmp_path / "exp2")


def test_a_speaker_subset_trains_from_the_whole_data_dirs_cache(tmp_path):
    from jeffreys.train import Trainer, load_train_config

    data = make_datadir(tmp_path / "d", speakers=4, utts=3)
    path = tmp_path / "c.yaml"
    path.write_text("")
    common = ["data.augment.prob=0.5", "data.augment.simulated_rirs=2", f"data.augment.cache_dir={tmp_path / 'rirs'}",
              "data.offline_copies=1", f"data.feature_cache={tmp_path / 'feats'}"]
    few = Trainer(load_train_config(path, tiny_overrides(data, *common, "data.max_speakers=2", steps=1)), tmp_path / "e1")
    assert few.dataset.speakers == ["spk0", "spk1"] and few.dataset.num_classes == 2 and len(few.dataset) == 6
    built = list((tmp_path / "feats").glob("*/meta.json"))
    assert len(built) == 1 and len(json.loads(built[0].read_text())["utts"]) == 12  # the whole data dir
    all_ = Trainer(load_train_config(path, tiny_overrides(data, *common, steps=1)), tmp_path / "e2")
    assert list((tmp_path / "feats").glob("*/meta.json")) == built  # the same cache, not a second one
    x_few, _ = few.dataset[(0, 0)]
    x_all, _ = all_.dataset[(0, 0)]
    assert few.dataset.utts[0] == all_.dataset.utts[0] and torch.equal(x_few, x_all)  # same item, same crop


def test_a_damaged_cache_or_a_bad_subset_size_is_one_line(setup, tmp_path):
    from jeffreys.train import load_train_config

    root, ds, aug, fbank = setup
    good = feature_cache.build(ds, aug, fbank, 2, root / "c1", jobs=1)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    for name, content in (("meta.json", b"[1, 2]"), ("meta.json", b"{\"version\": 1, \"utts\": 3}"),
                          ("index.npy", b"\x93NUMPY garbage")):
        shutil.copytree(good, bad, dirs_exist_ok=True)
        (bad / name).write_bytes(content)
        with pytest.raises(InputError, match="not a feature cache") as e:
            feature_cache.FeatureCache(bad, ds.utts)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    path = tmp_path / "c.yaml"
    path.write_text("data: {max_speakers: 1}\n")
    with pytest.raises(InputError, match="max_speakers must be at least 2"):
        load_train_config(path, [f"data.train={root}"])


def test_a_killed_build_leaves_nothing_the_next_build_keeps(setup):
    """A build runs in a temporary sibling: one left by a dead process is removed by the next."""
    root, ds, aug, fbank = setup
    where = root / "killed"
    key = feature_cache.cache_key(ds, aug, fbank, 1)
    where.mkdir()
    from jeffreys.fileio import _temp_name

    stale = _temp_name(where / key)
    stale.mkdir()
    stale = stale.rename(stale.with_name(stale.name.replace(f"-{os.getpid()}-", "-999999999-")))
    (stale / "feats.f16").write_bytes(b"\0" * 1024)
    built = feature_cache.build(ds, aug, fbank, 1, where, jobs=1)
    assert built == where / key and not stale.exists()
