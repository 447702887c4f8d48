"""`logging.backends: [tensorboard, wandb]` for real: a tiny run, then its TensorBoard event files and its
offline W&B run read back, with the run name, the config and every metric of metrics.jsonl."""

import json
import os
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.runner import run_recipe

MISSING = [name for name in ("tensorboard", "wandb") if __import__("importlib").util.find_spec(name) is None]
if MISSING and os.environ.get("CI"):  # CI installs the extra (scripts/setup.sh): absent there is a failure
    raise RuntimeError(f"the tracking extra is not installed in CI ({', '.join(MISSING)}): check scripts/setup.sh EXTRAS")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs the tracking extra (pip install 'rlkit[tracking]'): {MISSING} missing")

RECIPE = """
name: tracked
threads: 1
rollout: {n: 2, max_new_tokens: 16}
eval: {limit: 4}
logging: {backends: [tensorboard, wandb], wandb_mode: offline, wandb_project: rlkit-test}
stages:
  - {type: sft, steps: 3, batch_size: 4}
  - {type: rl, steps: 2, batch_size: 2}
"""


def wandb_records(path: Path) -> list:
    """The records of a .wandb file: W&B's LevelDB-style log (7-byte header ':W&B' + magic + version, then
    32 KiB blocks of records: crc32, length, type (1 full, 2 first, 3 middle, 4 last), protobuf bytes)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tracked")
    (root / "r.yaml").write_text(RECIPE)
    os.environ["WANDB_SILENT"] = "true"
    run_recipe(load_config(root / "r.yaml"), root / "my-run")
    return root / "my-run"


def logged(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def numeric(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in ("stage", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_tensorboard_holds_every_metric_per_stage_and_the_config(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for stage in ("sft", "rl"):
        events = EventAccumulator(str(tracked_run / "tensorboard" / stage), size_guidance={"scalars": 0}).Reload()
        expected = [r for r in logged(tracked_run) if r["stage"] == stage]
        keys = set().union(*(numeric(r) for r in expected))
        assert keys and keys <= set(events.Tags()["scalars"]), keys - set(events.Tags()["scalars"])
        for key in keys:
            got = {e.step: e.value for e in events.Scalars(key)}
            want = {r["step"]: r[key] for r in expected if key in numeric(r)}
            assert got == pytest.approx(want, rel=1e-6), key  # float32 in the event file
    run = EventAccumulator(str(tracked_run / "tensorboard" / "run"), size_guidance={"tensors": 0}).Reload()
    assert "config/text_summary" in run.Tags()["tensors"]
    text = run.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: tracked" in text and "type: rl" in text
    assert "summary/final_eval/accuracy" in run.Tags()["scalars"]


def test_wandb_offline_run_holds_name_config_and_every_metric(tracked_run):
    (run_file,) = (tracked_run / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "my-run" and run.project == "rlkit-test" and run.run_group == "tracked"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["name"] == "tracked" and [s["type"] for s in config["stages"]] == ["sft", "rl"]
    assert json.loads((tracked_run / "tracking.json").read_text())["wandb_id"] == run.run_id
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    expected = [{f"{r['stage']}/step": r["step"], **{f"{r['stage']}/{k}": v for k, v in numeric(r).items()}} for r in logged(tracked_run)]
    got = [{k: v for k, v in row.items() if not k.startswith("_")} for row in history]
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        assert row == pytest.approx(want), want[next(iter(want))]
    summary = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
               for r in records if r.WhichOneof("record_type") == "summary" for item in r.summary.update}
    assert summary["final_eval/accuracy"] == json.loads((tracked_run / "summary.json").read_text())["final_eval"]["accuracy"]


def test_a_backend_that_is_not_installed_fails_when_the_recipe_loads(tmp_path, monkeypatch):
    import importlib.util

    from rlkit.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    (tmp_path / "r.yaml").write_text("logging: {backends: [wandb]}\nstages:\n  - {type: sft}\n")
    with pytest.raises(ConfigError, match=r"logging.backends.*'wandb' package, which is not installed: pip install 'rlkit\[tracking\]'"):
        load_config(tmp_path / "r.yaml")
