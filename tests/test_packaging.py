"""Every Python package folder is listed in pyproject.toml (rewards/ and synth/ install into rlkit.*)."""

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"rlkit": "rlkit", "rewards": "rlkit.rewards", "synth": "rlkit.synth"}


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, dotted in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([dotted, *rel.parts]))
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"


def test_rewards_and_synth_import_from_the_rlkit_namespace():
    import rlkit.rewards.math
    import rlkit.synth

    assert Path(rlkit.rewards.math.__file__).parent.name == "rewards"
    assert Path(rlkit.synth.__file__).parent.name == "synth"
