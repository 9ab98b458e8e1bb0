"""Benchmarks take testbeds by name or by the folder of a built one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import testbed_dirs as folders_of
from core.testbed.paths import named_testbed_dir


def test_a_built_folder_is_taken_as_it_is_and_a_name_as_the_named_testbed(tmp_path: Path) -> None:
    built = tmp_path / "testbed-dev23"
    built.mkdir()
    (built / "manifest.json").write_text("{}")
    assert folders_of(f"{built}, full,") == [built, named_testbed_dir("full")]


def test_a_folder_without_a_manifest_is_no_testbed(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no testbed named"):
        folders_of(str(tmp_path))
