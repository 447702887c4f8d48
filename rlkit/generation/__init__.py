"""Generation backends behind one small interface (base.py): the tiny world's fallible teacher, any rlkit
rollout engine on a local model, and an OpenAI-compatible server."""

from rlkit.config import GeneratorConfig
from rlkit.errors import ConfigError
from rlkit.generation.base import GENERATORS, Generation, Generator, register_generator

__all__ = ["GENERATORS", "Generation", "Generator", "build_generator", "register_generator"]


def build_generator(config: GeneratorConfig) -> Generator:
    _import_backends()
    if config.backend not in GENERATORS:
        raise ConfigError(f"key 'generator.backend': unknown backend '{config.backend}'; expected one of {', '.join(sorted(GENERATORS))}")
    return GENERATORS[config.backend](config)


def _import_backends() -> None:
    """Each backend module registers itself on import; none imports a heavy library at module level. Here, not in
    base.py, which the backends import: the package loads its plug-ins, so no module imports one that imports it."""
    from rlkit.generation import local, openai_server, tiny_teacher  # noqa: F401
