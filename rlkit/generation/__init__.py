"""Generation backends behind one small interface (base.py): the tiny world's fallible teacher, any rlkit
rollout engine on a local model, and an OpenAI-compatible server."""

from rlkit.generation.base import GENERATORS, Generation, Generator, register_generator
from rlkit.generation.build import build_generator

__all__ = ["GENERATORS", "Generation", "Generator", "build_generator", "register_generator"]
