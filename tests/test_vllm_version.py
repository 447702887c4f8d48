"""The vLLM version check at engine start: runs without vLLM (the main venv), on fake version strings."""

from __future__ import annotations

import sys
import types

import pytest

from rlkit.errors import ConfigError
from rlkit.rollout.vllm_engine import MIN_VLLM, TESTED_VLLM, check_vllm_version, import_vllm


@pytest.mark.parametrize("version", [TESTED_VLLM, "0.32.0+cpu", MIN_VLLM, "0.11.2"])
def test_supported_versions_pass(version, recwarn):
    check_vllm_version(version)
    assert not [w for w in recwarn if "vLLM" in str(w.message)]


@pytest.mark.parametrize("version", ["0.10.2", "0.8.5.post1", "0.6.0+cpu"])
def test_too_old_vllm_is_a_config_error_naming_both_versions(version):
    with pytest.raises(ConfigError) as err:
        check_vllm_version(version, where="/some/venv/vllm")
    message = str(err.value)
    assert f"needs vLLM >= {MIN_VLLM}" in message and f"tested with {TESTED_VLLM}" in message
    assert repr(version) in message and "/some/venv/vllm" in message
    assert "setup_vllm_venv.sh" in message and "rlkit[gpu]" in message


def test_unreadable_version_is_a_config_error():
    with pytest.raises(ConfigError, match=r"cannot read the vLLM version.*'dev-build'"):
        check_vllm_version("dev-build")


def test_newer_than_tested_warns_with_the_pin():
    with pytest.warns(UserWarning, match=f"newer than the tested {TESTED_VLLM}.*vllm=={TESTED_VLLM}"):
        check_vllm_version("0.40.1")


@pytest.fixture(autouse=True)
def vllm_env(monkeypatch):
    """import_vllm sets these when unset; keep them from leaking into other tests."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "WARNING")


def test_missing_vllm_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ConfigError, match=r"rollout\.engine=vllm but vLLM cannot be imported.*setup_vllm_venv\.sh"):
        import_vllm()


def test_import_checks_the_installed_version(monkeypatch):
    old = types.ModuleType("vllm")
    old.__version__ = "0.9.2"
    old.__file__ = "/opt/old-venv/site-packages/vllm/__init__.py"
    monkeypatch.setitem(sys.modules, "vllm", old)
    with pytest.raises(ConfigError, match=r"found vLLM '0.9.2' in /opt/old-venv/site-packages/vllm"):
        import_vllm()


def test_the_gpu_extra_asks_for_the_version_the_engine_accepts():
    """One minimum: the engine's MIN_VLLM; the pip extra says the same, so pip never installs a vLLM the engine refuses."""
    from pathlib import Path

    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [r for r in extras["gpu"] if r.startswith("vllm")] == [f"vllm>={MIN_VLLM}"]
