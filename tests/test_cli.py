"""The command line itself: overrides anywhere, a fast `rlkit --help`, one-line usage errors."""

import subprocess
import sys

import yaml

from rlkit.cli import main as cli


def test_overrides_may_follow_flags(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {type: rl, steps: 4}\n")
    assert cli(["run", str(recipe), "--dry-run", "rl.lr=5e-7", "-o", str(tmp_path / "x"), "rollout.n=3"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["stages"][0]["lr"] == 5e-7 and config["rollout"]["n"] == 3


def test_a_stray_flag_is_a_usage_error_naming_the_command(capsys):
    try:
        cli(["run", "r.yaml", "--bogus"])
    except SystemExit as stop:
        assert stop.code == 2
    assert capsys.readouterr().err == "rlkit: error: unrecognized arguments: --bogus (see rlkit run --help)\n"


def test_rlkit_alone_names_the_help_once(capsys):
    try:
        cli([])
    except SystemExit as stop:
        assert stop.code == 2
    assert capsys.readouterr().err == "rlkit: error: the following arguments are required: command (see rlkit --help)\n"


def test_help_lists_every_command_without_importing_any_heavy_library():
    probe = ("import sys\nfrom rlkit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'transformers', 'pydantic', 'yaml', 'rich', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    for name in ("run", "reward", "eval", "plot", "bench"):
        assert f"    {name} " in done.stdout


def test_the_help_summaries_are_each_commands_own():
    import argparse
    import importlib

    from rlkit.cli import COMMANDS, SUMMARIES

    for name in COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"rlkit.commands.{name}").add_parser(sub)
        (action,) = sub._choices_actions
        assert SUMMARIES[name] == action.help, name
