"""ResNet extractor presets and the model bundle file."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from jeffreys.config import from_dict
from jeffreys.errors import InputError
from jeffreys.losses import build_head
from jeffreys.models import PRESETS, ResNetConfig, SpeakerModel, load_bundle, param_count, preset, save_bundle, update_bundle_meta
from jeffreys.models.resnet import StatsPool


def _count_by_hand(cfg: ResNetConfig) -> int:
    """Parameters from the architecture's definition: 3×3 convs without bias, BN (γ, β)."""
    conv = lambda k, cin, cout: k * k * cin * cout  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    stem = cfg.stem_width or cfg.widths[0]
    total = conv(3, 1, stem) + bn(stem)
    cin = stem
    for width, depth, stride in zip(cfg.widths, cfg.depths, cfg.strides):
        for b in range(depth):
            s = stride if b == 0 else 1
            total += conv(3, cin, width) + bn(width) + conv(3, width, width) + bn(width)
            if s != 1 or cin != width:
                total += conv(1, cin, width) + bn(width)
            cin = width
    freq = cfg.num_mel_bins
    for s in [cfg.stem_stride, *cfg.strides]:
        freq = (freq + s - 1) // s
    stats = 2 * cfg.widths[-1] * freq
    return total + stats * cfg.embed_dim + cfg.embed_dim


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_count_matches_the_definition(name):
    assert param_count(name) == _count_by_hand(PRESETS[name])


def test_presets_have_the_published_shapes():
    paper = PRESETS["paper"]
    assert (paper.widths, paper.depths, paper.num_mel_bins, paper.embed_dim) == ([128, 128, 256, 256], [3, 4, 6, 3], 60, 256)
    wes = PRESETS["wespeaker"]
    assert (wes.widths, wes.depths, wes.num_mel_bins) == ([32, 64, 128, 256], [3, 4, 6, 3], 80)
    # WeSpeaker lists its ResNet-34 (256-dim embedding) at 6.63 M parameters.
    assert round(param_count("wespeaker") / 1e6, 2) == 6.63


def test_stats_pool_against_float64_numpy():
    x = torch.randn(3, 5, 17, dtype=torch.float64)
    pool = StatsPool(eps=0.0)
    ref = np.concatenate([x.numpy().mean(-1), x.numpy().std(-1)], axis=-1)
    np.testing.assert_allclose(pool(x).numpy(), ref, rtol=1e-12)
    # A constant input keeps a finite gradient (eps inside the square root).
    c = torch.ones(1, 2, 9, requires_grad=True)
    StatsPool()(c).sum().backward()
    assert torch.isfinite(c.grad).all()


def test_speaker_model_shapes_and_feature_path():
    cfg = preset("demo", widths=[4, 4, 8, 8], embed_dim=12, num_mel_bins=20)
    torch.manual_seed(0)
    model = SpeakerModel(cfg).eval()
    waves = torch.randn(2, 8000) * 0.1
    emb = model(waves)
    assert emb.shape == (2, 12)
    feats = model.features(waves)
    assert feats.shape == (2, 48, 20)  # 25 ms frames every 10 ms over 0.5 s
    torch.testing.assert_close(model.embed_features(feats), emb)
    # Any length works: the pooling is over time.
    assert model(torch.randn(1, 3000)).shape == (1, 12)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        model(torch.randn(8000))


def test_gradients_reach_every_parameter():
    cfg = preset("demo", widths=[4, 4, 8, 8], embed_dim=6, num_mel_bins=16)
    model = SpeakerModel(cfg)
    model(torch.randn(3, 6000) * 0.1).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "data, match",
    [
        ({"widths": [8, 8], "depths": [1, 1, 1]}, "same length"),
        ({"depths": [1, 0, 1, 1]}, "depths must be positive"),
        ({"num_mel_bins": 0}, "num_mel_bins"),
        ({"widths": "wide"}, "key 'model.widths': must be a list"),
        ({"colour": 3}, "key 'model.colour': unknown key"),
    ],
)
def test_config_errors_name_the_key(data, match):
    with pytest.raises(InputError, match=match):
        from_dict(ResNetConfig, data, source="m.yaml", prefix="model")


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        preset("huge")


# ---- bundle --------------------------------------------------------------------------

def _tiny(tmp_path, head_kind="aam"):
    torch.manual_seed(1)
    cfg = preset("demo", widths=[4, 4, 8, 8], embed_dim=8, num_mel_bins=16)
    model = SpeakerModel(cfg).eval()
    head = build_head(head_kind, 8, 3, scale=30.0 if head_kind != "softmax" else None, margin=0.1 if head_kind != "softmax" else None)
    path = save_bundle(tmp_path / "model.pt", model, head, ["a", "b", "c"], meta={"note": "x"})
    return model, head, path


@pytest.mark.parametrize("head_kind", ["aam", "am", "softmax"])
def test_bundle_round_trip(tmp_path, head_kind):
    model, head, path = _tiny(tmp_path, head_kind)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "jeffreys-model/2" and raw["speakers"] == ["a", "b", "c"]
    assert raw["head"]["kind"] == head_kind and raw["model"]["kind"] == "resnet"
    b = load_bundle(path)
    assert not b.model.training and b.speakers == ["a", "b", "c"] and b.meta == {"note": "x"}
    assert b.config["widths"] == [4, 4, 8, 8]
    waves = torch.randn(2, 5000) * 0.1
    torch.testing.assert_close(b.model(waves), model(waves), rtol=0, atol=0)
    emb = torch.randn(4, 8)
    torch.testing.assert_close(b.head(emb), head(emb), rtol=0, atol=0)
    assert getattr(b.head, "margin", 0.0) == getattr(head, "margin", 0.0)


def test_bundle_without_head(tmp_path):
    cfg = preset("demo", widths=[4, 4, 8, 8], embed_dim=8, num_mel_bins=16)
    path = save_bundle(tmp_path / "m.pt", SpeakerModel(cfg), None, [])
    assert load_bundle(path).head is None


def test_update_bundle_meta(tmp_path):
    _, _, path = _tiny(tmp_path)
    update_bundle_meta(path, mean=[0.5] * 8, threshold=0.25, calibration={"a": 2.0, "b": -1.0})
    meta = load_bundle(path).meta
    assert meta["mean"] == [0.5] * 8 and meta["threshold"] == 0.25 and meta["calibration"] == {"a": 2.0, "b": -1.0}
    assert meta["note"] == "x"
    before = path.read_bytes()
    with pytest.raises(InputError, match="meta key 'mean'.*ndarray"):
        update_bundle_meta(path, mean=np.zeros(8))
    assert path.read_bytes() == before  # nothing written on error
    assert not list(tmp_path.glob(".*tmp"))


def test_bad_bundle_files(tmp_path):
    with pytest.raises(InputError, match="no such model bundle file"):
        load_bundle(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match=f"{junk}: not a jeffreys model bundle"):
        load_bundle(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(InputError, match=f"{other}: not a jeffreys model bundle"):
        load_bundle(other)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "jeffreys-model/1", "obj": Fraction(1, 3)}, evil)  # arbitrary pickle: refused
    with pytest.raises(InputError, match=f"{evil}: not a jeffreys model bundle"):
        load_bundle(evil)
    _, _, path = _tiny(tmp_path)
    data = torch.load(path, weights_only=True)
    data["model"]["embed_dim"] = 9
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="weights do not match the model config"):
        load_bundle(tmp_path / "mismatch.pt")
    data = torch.load(path, weights_only=True)
    data["model"]["depth"] = 3
    torch.save(data, tmp_path / "badcfg.pt")
    with pytest.raises(InputError, match="key 'model.depth': unknown key"):
        load_bundle(tmp_path / "badcfg.pt")
    data = torch.load(path, weights_only=True)
    data["head"]["kind"] = "os:system"  # importable, but not a module class: never called
    torch.save(data, tmp_path / "os.pt")
    with pytest.raises(InputError, match="head kind 'os:system': 'system' is not a torch.nn.Module class"):
        load_bundle(tmp_path / "os.pt")


def test_a_bundle_never_imports_a_module_by_itself(tmp_path, monkeypatch):
    """A model file naming a plug-in class whose module writes a marker when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\nclass Head(torch.nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("JEFFREYS_PLUGINS", raising=False)
    _, _, path = _tiny(tmp_path)
    data = torch.load(path, weights_only=True)
    for section in ("model", "head"):
        bad = dict(data, **{section: dict(data[section], kind="evil_plugin:Head")})
        torch.save(bad, tmp_path / "evil.pt")
        with pytest.raises(InputError, match=f"{section} kind 'evil_plugin:Head' is a plug-in; a model file may not import code by itself"):
            load_bundle(tmp_path / "evil.pt")
        assert not marker.exists()


@pytest.mark.parametrize("head_kind", ["aam", "softmax"])
def test_format_1_bundles_still_load(tmp_path, head_kind):
    """Files written before the plug-in registries: model_config, head_config with every
    built-in head argument, the embedder's weights under resnet.*."""
    model, head, path = _tiny(tmp_path, head_kind)
    data = torch.load(path, weights_only=True)
    old = {
        "format": "jeffreys-model/1",
        "model_config": {k: v for k, v in data["model"].items() if k not in ("kind", "preset")},
        "state_dict": {k.replace("embedder.", "resnet.", 1): v for k, v in data["state_dict"].items()},
        "head_config": {"kind": head_kind, "embed_dim": 8, "num_classes": 3, "scale": data["head"]["scale"],
                        "margin": data["head"].get("margin", 0.0), "easy_margin": False},
        "head_state_dict": data["head_state_dict"], "speakers": data["speakers"], "meta": data["meta"],
    }
    torch.save(old, tmp_path / "old.pt")
    b = load_bundle(tmp_path / "old.pt")
    waves = torch.randn(2, 5000) * 0.1
    torch.testing.assert_close(b.model(waves), model(waves), rtol=0, atol=0)
    emb = torch.randn(4, 8)
    torch.testing.assert_close(b.head(emb), head(emb), rtol=0, atol=0)


def test_embed_bn_normalises_the_embedding():
    cfg = preset("demo", widths=[4, 4, 8, 8], embed_dim=6, num_mel_bins=16)
    assert cfg.embed_bn and not PRESETS["paper"].embed_bn
    model = SpeakerModel(cfg).train()
    emb = model(torch.randn(16, 4000) * 0.1).detach().double()
    torch.testing.assert_close(emb.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(emb.var(0, unbiased=False), torch.ones(6, dtype=torch.float64), atol=1e-3, rtol=0)
    assert param_count(cfg) == _count_by_hand(cfg)  # no affine parameters


@pytest.mark.parametrize("norm", ["mean", "level", "none"])
def test_feature_norm_reaches_the_front_end_and_the_bundle(tmp_path, norm):
    cfg = preset("demo", widths=[4, 4, 8, 8], embed_dim=8, num_mel_bins=16, feature_norm=norm)
    model = SpeakerModel(cfg).eval()
    assert (model.fbank.mean_norm, model.fbank.level_norm) == (norm == "mean", norm == "level")
    b = load_bundle(save_bundle(tmp_path / "m.pt", model, None, []))
    assert b.config["feature_norm"] == norm and b.model.fbank.level_norm == (norm == "level")
    waves = torch.randn(2, 5000) * 0.1
    torch.testing.assert_close(b.model(waves), model(waves), rtol=0, atol=0)
    with pytest.raises(InputError, match="feature_norm must be one of mean, level, sliding, none"):
        from_dict(ResNetConfig, {"feature_norm": "cmvn"}, source="m.yaml", prefix="model")
