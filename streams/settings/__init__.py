"""Settings: one validated, frozen configuration per environment (:class:`Settings`).

The sections are in :mod:`streams.settings.models`, loading and its errors in
:mod:`streams.settings.loader`; import from here.
"""

from streams.settings.loader import (
    ConfigError,
    apply_override,
    config_path,
    default_config_dir,
    describe_validation_error,
    interpolate,
    load_settings,
    redacted,
)
from streams.settings.models import (
    DEFAULT_ENTITY_TYPES,
    ENVIRONMENTS,
    ApiSettings,
    CacheSettings,
    ChunkingSettings,
    CommunitySettings,
    ExtractionSettings,
    GraphragSettings,
    KafkaSettings,
    MongoSettings,
    MonitoringSettings,
    OpenAISettings,
    ResolutionSettings,
    ScalingSettings,
    SecuritySettings,
    Settings,
    SinkSettings,
    TranscriptSettings,
)

__all__ = [
    "DEFAULT_ENTITY_TYPES",
    "ENVIRONMENTS",
    "ApiSettings",
    "CacheSettings",
    "ChunkingSettings",
    "CommunitySettings",
    "ConfigError",
    "ExtractionSettings",
    "GraphragSettings",
    "KafkaSettings",
    "MongoSettings",
    "MonitoringSettings",
    "OpenAISettings",
    "ResolutionSettings",
    "ScalingSettings",
    "SecuritySettings",
    "Settings",
    "SinkSettings",
    "TranscriptSettings",
    "apply_override",
    "config_path",
    "default_config_dir",
    "describe_validation_error",
    "interpolate",
    "load_settings",
    "redacted",
]
