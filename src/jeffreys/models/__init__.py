"""Speaker-embedding extractors (ResNet presets) and the model bundle file."""

from .bundle import Bundle, load_bundle, save_bundle, update_bundle_meta
from .memory_format import memory_format_policy
from .resnet import PRESETS, ResNetConfig, ResNetEmbedder, SpeakerModel, param_count, preset

__all__ = [
    "Bundle",
    "PRESETS",
    "ResNetConfig",
    "ResNetEmbedder",
    "SpeakerModel",
    "load_bundle",
    "memory_format_policy",
    "param_count",
    "preset",
    "save_bundle",
    "update_bundle_meta",
]
