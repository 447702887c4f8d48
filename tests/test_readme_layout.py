"""The README's layout section matches the tree: every package and top-level module of rlkit/ is in it, and
every path or module file it names exists (a rename that forgets the README fails here)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layout_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_every_rlkit_package_and_module_is_in_the_layout():
    block = layout_block()
    missing = [f"rlkit/{p.name}/" for p in (REPO / "rlkit").iterdir() if (p / "__init__.py").is_file() and f"rlkit/{p.name}/" not in block]
    missing += [p.name for p in (REPO / "rlkit").glob("*.py") if p.name != "__init__.py" and p.name not in block]
    missing += [f"{p.name}/" for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "__init__.py").exists() and f"{p.name}/" not in block]
    assert missing == [], f"add to the README's layout section: {missing}"


def test_every_name_in_the_layout_exists():
    block = layout_block()
    paths = [p.rstrip(".") for p in re.findall(r"\b((?:rlkit|rewards|synth|recipes|examples|scripts|docs|tests)/[\w/.]*)", block)]
    modules = set(re.findall(r"\b(\w+\.py)\b(?!:)", block))  # not the "file.py:fn" of a reference
    existing = {p.name for p in REPO.glob("**/*.py") if ".venv" not in p.parts}
    assert [p for p in paths if not (REPO / p).exists()] == []
    assert sorted(modules - existing) == []
