"""Speaker-embedding extractors (ResNet presets) and the model bundle file."""

from .bundle import Bundle, load_bundle, save_bundle, update_bundle_meta
from .resnet import PRESETS, ResNetConfig, ResNetEmbedder, SpeakerModel, param_count, preset

__all__ = [
    "Bundle",
    "PRESETS",
    "ResNetConfig",
    "ResNetEmbedder",
    "SpeakerModel",
    "load_bundle",
    "param_count",
    "preset",
    "save_bundle",
    "update_bundle_meta",
]
