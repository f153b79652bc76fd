"""Model bundles and calibrations are bounded where they are read.

* A bundle is refused from its recorded configuration, before torch reads its tensors or any
  layer is built, when the file, what its zip entries expand to, or the model its config
  describes (jeffreys.models.bundle.estimate_bytes) passes the limit (4 GiB by default,
  JEFFREYS_MAX_MODEL_BYTES); its tensors must then have the shapes the config gives them.
* A calibration llr = a * score + b whose LLRs leave the range (|a| * 1000 + |b| > 1e7) is
  refused in a model's meta and in a JSON file, and never fitted and written.
* A mean (meta["mean"], a .npy mean) must be finite, of the embedding's size, within 1e6.
* A training checkpoint (train --resume) is bounded like a bundle's file, by 3 times the limit.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from jeffreys.decision import MAX_LLR, MAX_SCORE, DecisionRule
from jeffreys.errors import InputError
from jeffreys.losses import build_head
from jeffreys.models import ResNetConfig, ResNetEmbedder, SpeakerModel, load_bundle, save_bundle
from jeffreys.models import bundle as bundle_module
from jeffreys.models.bundle import estimate_bytes, resnet_elements
from jeffreys.registry import HeadSpec, ModelSpec
from jeffreys.scoring import LinearCalibration

SMALL = ResNetConfig(widths=[4, 8], depths=[1, 1], strides=[1, 2], num_mel_bins=16, embed_dim=8)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("bundles") / "good.pt"
    torch.manual_seed(0)
    save_bundle(path, SpeakerModel(SMALL), build_head("aam", 8, 3), ["a", "b", "c"])
    return path, torch.load(path, weights_only=True)


def _crafted(tmp_path: Path, data: dict, name: str = "x.pt", **changes) -> Path:
    out = dict(data)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        out[section] = {**out[section], field: value}
    torch.save(out, tmp_path / name)
    return tmp_path / name


# ----------------------------------------------------------------------------- model size
HUGE = [
    ("widths", {"model__widths": [100_000, 100_000]}),  # 9 * 1e10 weights per convolution
    ("stem", {"model__stem_width": 100_000_000}),  # the stem and the first block's input
    ("depth", {"model__depths": [1_000_000, 1]}),  # a million tiny blocks: host memory in Python objects
    ("mels", {"model__num_mel_bins": 10_000_000}),  # the filterbank matrix and the embedding layer
    ("embedding", {"model__embed_dim": 50_000_000}),
    ("head", {"head__embed_dim": 400_000_000}),  # 3 classes x 4e8
]


@pytest.mark.parametrize("changes", [c for _, c in HUGE], ids=[n for n, _ in HUGE])
def test_bundle_describing_a_huge_model_is_refused_before_anything_is_built(good, tmp_path, monkeypatch, changes):
    path = _crafted(tmp_path, good[1], **changes)

    def never(*args, **kwargs):
        raise AssertionError("a layer was built")

    monkeypatch.setattr(bundle_module, "SpeakerModel", never)
    with pytest.raises(InputError, match=r"x\.pt: the model its config describes needs about [\d.]+ [GTP]iB, more than the "
                                         r"limit of 4 GiB \(raise it with --max-model-bytes or JEFFREYS_MAX_MODEL_BYTES\)"):
        load_bundle(path)


@pytest.mark.parametrize("rate", [1, 999, 10**9])
def test_model_sample_rate_outside_the_audio_range_is_refused(good, tmp_path, rate):
    with pytest.raises(InputError, match=rf"x\.pt: key 'model\.sample_rate': {rate} Hz is outside"):
        load_bundle(_crafted(tmp_path, good[1], model__sample_rate=rate))


def test_the_limit_is_overridable(good, tmp_path, monkeypatch):
    path, data = good
    need = estimate_bytes(ModelSpec.from_config(data["model"]), HeadSpec.from_config({k: v for k, v in data["head"].items()
                                                                                     if k not in ("embed_dim", "num_classes")}),
                          embed_dim=8, num_classes=3)
    assert path.stat().st_size < need  # the filterbank's tables alone take more than the file
    assert load_bundle(path, max_bytes=need)
    with pytest.raises(InputError, match="needs about"):
        load_bundle(path, max_bytes=need - 1)
    monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", "16K")
    with pytest.raises(InputError, match=r"good\.pt: the model bundle is [\d.]+ MiB, more than the limit of 0\.0156 MiB"):
        load_bundle(path)
    monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", "lots")
    with pytest.raises(InputError, match="JEFFREYS_MAX_MODEL_BYTES='lots'"):
        load_bundle(path)
    monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", "1G")
    assert load_bundle(path).speakers == ["a", "b", "c"]


@pytest.mark.parametrize("megabytes", [50, 120, 300])
def test_deflated_bundle_expanding_past_the_limit_is_refused_before_torch_reads_it(good, tmp_path, monkeypatch, megabytes):
    """torch reads deflated zip entries too: zeros compress 1000 to 1."""
    plain = _crafted(tmp_path, {**good[1], "state_dict": {**good[1]["state_dict"], "junk": torch.zeros(megabytes << 18)}},
                     "plain.pt")
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as o:
        for info in z.infolist():
            o.writestr(info.filename, z.read(info.filename))
    plain.unlink()
    assert bomb.stat().st_size < megabytes << 12  # a few hundred kB
    loaded = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(1))
    with pytest.raises(InputError, match=r"bomb\.pt: the model bundle expands to [\d.]+ [MG]iB, more than the limit of 40 MiB"):
        load_bundle(bomb, max_bytes=40 << 20)
    assert not loaded


def test_estimate_is_exact_for_the_resnet_and_counts_heads_on_the_meta_device():
    """From the config's numbers, for random shapes: what a built model holds (parameters and buffers)."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        k = int(rng.integers(1, 5))
        cfg = ResNetConfig(
            widths=[int(x) for x in rng.integers(1, 24, k)], depths=[int(x) for x in rng.integers(1, 4, k)],
            strides=[int(x) for x in rng.integers(1, 3, k)], num_mel_bins=int(rng.integers(8, 81)),
            embed_dim=int(rng.integers(2, 64)), stem_width=None if rng.random() < 0.5 else int(rng.integers(1, 16)),
            stem_stride=int(rng.integers(1, 3)), embed_bn=bool(rng.random() < 0.5),
        )
        m = ResNetEmbedder(cfg)
        assert resnet_elements(cfg) == sum(t.numel() for t in [*m.parameters(), *m.buffers()]), cfg
    for kind in ("softmax", "am", "aam"):
        head = build_head(kind, 16, 7)
        spec = ModelSpec.from_config({"preset": "demo"})
        with_head = estimate_bytes(spec, HeadSpec.from_config({"kind": kind}), embed_dim=16, num_classes=7)
        assert with_head - estimate_bytes(spec) == 4 * sum(t.numel() for t in [*head.parameters(), *head.buffers()])


def test_tensors_must_have_the_shapes_the_config_gives(good, tmp_path):
    sd = dict(good[1]["state_dict"])
    key = next(k for k, v in sd.items() if v.dim() == 4)
    for shape in ((sd[key].shape[0] * 2, *sd[key].shape[1:]), (1,), (sd[key].numel(),)):
        path = _crafted(tmp_path, {**good[1], "state_dict": {**sd, key: torch.zeros(shape)}})
        with pytest.raises(InputError, match=r"x\.pt: weights do not match the model config"):
            load_bundle(path)
    path = _crafted(tmp_path, {**good[1], "speakers": ["a", "b"]})
    with pytest.raises(InputError, match="2 speakers for a head of 3 classes"):
        load_bundle(path)


# ----------------------------------------------------------------------------- calibration
ABSURD = [(1e308, 0.0), (1e5, 0.0), (1.0, 1e8), (1e4, 1.0), (5e3, 5e6 + 1), (2.0, -1e300)]
SANE = [(1.0, 0.0), (12.5, -4.0), (1011.75, -522.58), (1e4, 0.0), (5e3, 5e6), (1e-6, 3.0)]


@pytest.mark.parametrize("a,b", ABSURD)
def test_absurd_calibration_is_refused_in_meta_and_json(tmp_path, a, b):
    with pytest.raises(InputError, match=r"m\.pt: meta\['calibration'\] a=.* takes scores of \+-1000 to LLRs beyond \+-1e\+07"):
        DecisionRule.of({"calibration": {"a": a, "b": b}}, "m.pt")
    (tmp_path / "cal.json").write_text(json.dumps({"type": "linear", "a": a, "b": b, "prior": 0.5}))
    with pytest.raises(InputError, match=r"cal\.json: calibration a=.* beyond"):
        LinearCalibration.load(tmp_path / "cal.json")


@pytest.mark.parametrize("a,b", SANE)
def test_calibration_within_the_range_is_read(tmp_path, a, b):
    rule = DecisionRule.of({"calibration": {"a": a, "b": b}}, "m.pt")
    assert rule.llr(0.5) == a * 0.5 + b
    (tmp_path / "cal.json").write_text(json.dumps({"type": "linear", "a": a, "b": b, "prior": 0.5}))
    assert LinearCalibration.load(tmp_path / "cal.json").a == a


def test_every_calibration_read_keeps_llrs_finite_in_float32():
    """Random slopes and offsets over 600 orders of magnitude: a pair is read exactly when the
    rule holds, and every pair read maps scores within +-1000 to finite float32 LLRs."""
    rng = np.random.default_rng(0)
    scores = np.array([-MAX_SCORE, -1.0, 0.0, 1.0, MAX_SCORE], dtype=np.float32)
    for _ in range(2000):
        a = float(10 ** rng.uniform(-300, 308))
        b = float(rng.choice([-1, 1]) * 10 ** rng.uniform(-300, 308))
        try:
            DecisionRule.of({"calibration": {"a": a, "b": b}}, "m.pt")
            read = True
        except InputError:
            read = False
        assert read == (a * MAX_SCORE + abs(b) <= MAX_LLR)
        if read:
            llr = np.float32(a) * scores + np.float32(b)
            assert np.isfinite(llr).all() and np.abs(llr).max() <= MAX_LLR * (1 + 1e-6)


def test_fit_that_would_leave_the_range_is_refused_not_written(tmp_path):
    rng = np.random.default_rng(1)
    # perfectly separated cosines: a steep slope, still within the range
    t, n = rng.normal(0.7, 0.05, 50), rng.normal(0.2, 0.05, 200)
    cal = LinearCalibration.fit(np.r_[t, n], np.r_[np.ones(50), np.zeros(200)])
    assert 100 < cal.a and cal.a * MAX_SCORE + abs(cal.b) <= MAX_LLR
    cal.save(tmp_path / "c.json")
    assert LinearCalibration.load(tmp_path / "c.json").a == cal.a
    # separated scores a billionth apart: the slope would be ~1e10
    s = 0.5 + 1e-9 * np.r_[rng.uniform(1, 2, 50), rng.uniform(-2, -1, 200)]
    with pytest.raises(InputError, match="the fitted calibration .*beyond"):
        LinearCalibration.fit(s, np.r_[np.ones(50), np.zeros(200)])


def test_bundle_with_absurd_calibration_is_refused_by_the_library_face(good, tmp_path):
    import jeffreys

    path = _crafted(tmp_path, good[1], meta__calibration={"a": 1e308, "b": 0.0})
    with pytest.raises(InputError, match=r"x\.pt: meta\['calibration'\]"):
        jeffreys.load(path)


# ----------------------------------------------------------------------------- embedding mean
def test_mean_is_read_exactly_when_finite_of_the_embedding_size_and_within_range(tmp_path):
    """Random means (magnitudes over 15 orders, some non-finite, some of the wrong length) in a
    meta and in a .npy: read exactly when the rule holds, and every mean read keeps centred
    embeddings, and their squared norms, finite in float32."""
    from jeffreys.decision import MAX_MEAN, mean_of
    from jeffreys.scoring import load_mean

    rng = np.random.default_rng(8)
    seen = set()
    for trial in range(400):
        dim = int(rng.integers(1, 600))
        n = dim if rng.random() < 0.85 else max(0, dim + int(rng.choice([-1, 1, dim])))
        mean = rng.standard_normal(n) * 10 ** rng.uniform(-3, 12, n) * (rng.random() < 0.5)
        if n and rng.random() < 0.1:
            mean[rng.integers(n)] = rng.choice([np.nan, np.inf, -np.inf])
        ok = n == dim and bool(np.isfinite(mean).all()) and bool((np.abs(mean) <= MAX_MEAN).all())
        seen.add(ok)
        try:
            m = mean_of({"mean": mean.tolist()}, dim, "m.pt")
        except InputError as e:
            assert not ok and str(e).startswith("m.pt: meta['mean']"), str(e)
        else:
            assert ok and m.dtype == np.float32
            e = (rng.standard_normal((4, dim)) * 100).astype(np.float32) - m
            assert np.isfinite(np.einsum("ij,ij->i", e, e)).all()
        np.save(tmp_path / "mean.npy", mean)
        if n and np.isfinite(mean).all():
            try:
                load_mean(tmp_path / "mean.npy")
                assert (np.abs(mean) <= MAX_MEAN).all()
            except InputError as e:
                assert (np.abs(mean) > MAX_MEAN).any() and "the mean[" in str(e), str(e)
    assert seen == {True, False}
    assert mean_of({}, 8, "m.pt") is None


def test_bundle_with_absurd_mean_is_refused_where_read(good, tmp_path):
    import jeffreys
    from jeffreys.calibrate import calibrate

    for mean, match in (([0.0] * 7 + [1e30], r"meta\['mean'\]\[7\] = 1e\+30, beyond \+-1e\+06"),
                        ([1.0] * 7, r"meta\['mean'\] must be 8 finite numbers, got shape \(7,\)"),
                        ([True] * 8, r"meta\['mean'\] must be 8 finite numbers")):
        path = _crafted(tmp_path, good[1], meta__mean=mean)
        with pytest.raises(InputError, match=rf"x\.pt: {match}"):
            jeffreys.load(path)
        with pytest.raises(InputError, match=rf"x\.pt: {match}"):
            calibrate(path, tmp_path / "no-such-datadir")
    assert jeffreys.load(_crafted(tmp_path, good[1], meta__mean=[1e6, -1e6] + [0.0] * 6)).mean[0] == 1e6


# ----------------------------------------------------------------------------- checkpoints
def _checkpoint(model, head, path: Path) -> Path:
    """A checkpoint as the trainer writes one: weights, SGD with momentum after a step, RNG states, config."""
    from jeffreys.models.bundle import save_torch
    from jeffreys.train import CHECKPOINT_FORMAT, _rng_state

    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    sum(p.sum() for p in params).backward()
    opt.step()
    save_torch({"format": CHECKPOINT_FORMAT, "step": 1, "epoch": 0, "step_in_epoch": 1,
                "model": model.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                "scaler": {}, "rng": _rng_state(), "config": {"model": {"widths": [1] * 100}}}, path)
    return path


def test_checkpoint_is_bounded_by_three_times_the_model_limit_before_torch_reads_it(tmp_path, monkeypatch):
    """A model whose bundle loads under a limit has checkpoints that load under it (weights and
    momentum: twice the weights); random checkpoints, stuffed and deflated, are read exactly
    when the file and what it expands to are within 3 times the limit, else refused unread."""
    from jeffreys.train import CHECKPOINT_MODELS, _load_checkpoint

    assert CHECKPOINT_MODELS == 3
    cfg = ResNetConfig(widths=[32, 64], depths=[2, 2], strides=[1, 2], num_mel_bins=16, embed_dim=32)
    model, head = SpeakerModel(cfg), build_head("aam", 32, 500)
    save_bundle(tmp_path / "m.pt", model, head, [f"s{i}" for i in range(500)])
    need = estimate_bytes(ModelSpec.from_config(torch.load(tmp_path / "m.pt", weights_only=True)["model"]),
                          HeadSpec.from_config({"kind": "aam"}), embed_dim=32, num_classes=500)
    monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", str(need))  # the least under which the bundle loads
    assert load_bundle(tmp_path / "m.pt")
    ckpt = _checkpoint(model, head, tmp_path / "step-00000001.pt")
    assert need < ckpt.stat().st_size <= 3 * need
    assert _load_checkpoint(ckpt)["step"] == 1

    real_load, loaded = torch.load, []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(1) or real_load(*a, **k))
    rng = np.random.default_rng(9)
    for trial in range(8):
        junk = int(rng.integers(1, 4 << 20))
        plain = tmp_path / f"p{trial}.pt"
        data = real_load(ckpt, weights_only=True)
        data["optimizer"]["state"][0]["momentum_buffer"] = torch.zeros(junk)  # zeros: deflate 1000 to 1
        torch.save(data, plain)
        path = plain
        if trial % 2:
            path = tmp_path / f"d{trial}.pt"
            with zipfile.ZipFile(plain) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as o:
                for info in z.infolist():
                    o.writestr(info.filename, z.read(info.filename))
        with zipfile.ZipFile(path) as z:
            expanded = sum(i.file_size for i in z.infolist())
        edge = -(-max(path.stat().st_size, expanded) // 3)  # the least limit it loads under
        past = trial // 2 % 2
        limit = edge - int(rng.integers(1, edge // 2)) if past else edge + int(rng.integers(0, edge))
        monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", str(limit))
        loaded.clear()
        if not past:
            assert _load_checkpoint(path)["step"] == 1 and loaded
            continue
        with pytest.raises(InputError, match=rf"{path.name}: the training checkpoint (is|expands to) [\d.e+-]+ MiB, more than "
                                             r"the limit of [\d.e+-]+ MiB \(raise it with --max-model-bytes"):
            _load_checkpoint(path)
        assert not loaded
