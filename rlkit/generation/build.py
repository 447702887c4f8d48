"""`build_generator`: the backend a config names. Importing each backend module registers it
(`@register_generator` in base.py); none imports a heavy library at module level. This module sits above
the backends, so base.py never imports them back (no import cycle)."""

from __future__ import annotations

# each import registers its backend
import rlkit.generation.local
import rlkit.generation.openai_server
import rlkit.generation.tiny_teacher  # noqa: F401
from rlkit.config import GeneratorConfig
from rlkit.errors import ConfigError
from rlkit.generation.base import GENERATORS, Generator


def build_generator(config: GeneratorConfig) -> Generator:
    if config.backend not in GENERATORS:
        raise ConfigError(f"key 'generator.backend': unknown backend '{config.backend}'; expected one of {', '.join(sorted(GENERATORS))}")
    return GENERATORS[config.backend](config)
