import time
from pathlib import Path

import pytest

from dlhpc.fsio import dated_name


@pytest.fixture
def today() -> str:
    return time.strftime("%Y%m%d")


def test_a_dated_name_is_todays_stem_when_the_folder_has_none(tmp_path: Path, today: str) -> None:
    assert dated_name(tmp_path, "scale_2core", ".md", ".png") == f"scale_2core_{today}"
    assert dated_name(tmp_path / "not-yet-made", "serve_cpu", ".md") == f"serve_cpu_{today}"


def test_a_second_run_the_same_day_gets_the_next_free_number(tmp_path: Path, today: str) -> None:
    (tmp_path / f"core_{today}.md").write_text("first run")
    assert dated_name(tmp_path, "core", ".md") == f"core_{today}-2"
    (tmp_path / f"core_{today}-2.md").write_text("second run")
    assert dated_name(tmp_path, "core", ".md") == f"core_{today}-3"
    assert (tmp_path / f"core_{today}.md").read_text() == "first run"


def test_any_of_the_reports_files_takes_the_name(tmp_path: Path, today: str) -> None:
    (tmp_path / f"train_cpu_{today}.png").write_bytes(b"")  # the figure of an earlier run
    assert dated_name(tmp_path, "train_cpu", ".md", ".png") == f"train_cpu_{today}-2"
    assert dated_name(tmp_path, "train_cpu", ".md") == f"train_cpu_{today}"  # .png not asked
    assert dated_name(tmp_path, "other", ".md", ".png") == f"other_{today}"


def test_unwritable_says_why_before_any_work_and_leaves_nothing(tmp_path: Path) -> None:
    from dlhpc.fsio import unwritable

    plain = tmp_path / "plain"
    plain.write_text("x")
    assert unwritable(tmp_path / "new" / "deeper" / "report.png") is None  # made at the write
    assert unwritable(tmp_path / "reports", directory=True) is None
    assert unwritable(tmp_path, directory=True) is None
    assert unwritable(plain) is None  # replaced by the write
    assert unwritable(tmp_path) == f"{tmp_path}: is a directory; give a file name"
    assert unwritable(plain, directory=True) == f"{plain}: exists and is not a directory"
    assert (
        unwritable(plain / "r.png")
        == f"{plain}/r.png: cannot be written, {plain} is not a directory"
    )
    assert unwritable(Path("/dev/null")) == "/dev/null: exists and is not a regular file"
    if Path("/proc/self").is_dir():  # a directory nothing can be created in, even by root
        assert (unwritable(Path("/proc/r.png")) or "").startswith(
            "/proc/r.png: cannot be written ("
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # the probes are gone


def test_json_has_no_nan_or_infinity(tmp_path: Path) -> None:
    import json

    from dlhpc.fsio import atomic_write_json, json_line

    record = {"loss": float("nan"), "curve": [1.0, float("inf"), -float("inf")], "n": 3}
    assert json_line(record) == '{"loss": null, "curve": [1.0, null, null], "n": 3}'
    atomic_write_json(tmp_path / "s.json", record)
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json_line(record))
