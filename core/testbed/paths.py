"""Where the testbeds live: a locally built one under the data dir wins over the one shipped in the package.

The first testbed (profile `full`) is `testbed`; another recipe's is `testbed-<profile>` (e.g. the second
testbed, `testbed-subword`; the development testbed, `testbed-dev`), shipped beside the first under assets/.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "assets" / "testbed"


def built_dir() -> Path:
    """Default output of `lethe testbed build`: {data_dir}/testbed."""
    from core.config import get_settings

    return get_settings().data_dir / "testbed"


def testbed_dir() -> Path:
    """$LETHE_DATA_DIR/testbed if it holds a manifest, else the testbed shipped with the package."""
    local = built_dir()
    if (local / "manifest.json").is_file():
        return local
    return SHIPPED


# Profiles whose build is a testbed of its own (the others, full and tiny, build "the" testbed).
NAMED = ("subword", "dev")


def folder_name(name: str | None) -> str:
    return f"testbed-{name}" if name in NAMED else "testbed"


def named_testbed_dir(name: str | None = None) -> Path:
    """The testbed called `name` (None or "full": the first one): built under the data dir, else shipped.
    Raises FileNotFoundError when neither exists."""
    if name not in (None, "", "full") and name not in NAMED:
        raise FileNotFoundError(f"no testbed named {name!r}; named testbeds: full, {', '.join(NAMED)}")
    if folder_name(name) == "testbed":
        return testbed_dir()
    local = built_dir().parent / folder_name(name)
    for candidate in (local, SHIPPED.parent / folder_name(name)):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise FileNotFoundError(f"no testbed named {name!r}: build it with lethe testbed build --profile {name}")


def resolve_testbed(value: str) -> Path:
    """A testbed given as a name `named_testbed_dir` knows, or as the folder of a built testbed (one holding
    manifest.json, e.g. `lethe testbed build --profile dev --seed 23 --out DIR`). Raises FileNotFoundError."""
    folder = Path(value)
    return folder if (folder / "manifest.json").is_file() else named_testbed_dir(value)


def testbed_of(model: Path) -> Path | None:
    """The testbed a model folder belongs to: the folder itself or the one above it (a testbed's pipeline/)
    when it holds manifest.json; None for a model folder that is no testbed's."""
    for candidate in (Path(model), Path(model).parent):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None
