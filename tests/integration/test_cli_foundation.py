import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

LETHE = [sys.executable, "-m", "core.cli"]


def _run(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **env_extra}
    return subprocess.run([*LETHE, *args], capture_output=True, text=True, env=env, timeout=120)


def test_help_lists_commands() -> None:
    out = _run(["--help"], {})
    assert out.returncode == 0, out.stderr
    for word in ("version", "config", "db"):
        assert word in out.stdout


def test_config_show_redacts(tmp_path: Path) -> None:
    out = _run(
        ["config", "show", "--json"],
        {"LETHE_DATA_DIR": str(tmp_path), "LETHE_DATABASE_URL": "postgresql+psycopg://u:sekret@h/db"},
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "sekret" not in out.stdout
    assert data["data_dir"] == str(tmp_path.resolve())


def test_db_upgrade_sqlite_and_postgres(tmp_path: Path, empty_pg_url: str) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'cli.db'}"
    for url in (sqlite_url, empty_pg_url):
        out = _run(["db", "upgrade"], {"LETHE_DATA_DIR": str(tmp_path), "LETHE_DATABASE_URL": url})
        assert out.returncode == 0, out.stderr
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        engine.dispose()
