"""The engine: DuckDB and the extensions the lake needs, loaded with no download.

DuckDB's signed extension builds for 1.5 ship on PyPI as `duckdb-extension-<name>` packages, each
holding `extensions/v<version>/<name>.duckdb_extension`. DuckDB looks for an extension at
`<extension_directory>/v<version>/<platform>/<entry point>.duckdb_extension`, and the SQLite and
PostgreSQL extensions' entry points are `sqlite_scanner` and `postgres_scanner`: so the directory
is laid out here, once per machine and version, as links to the packages' files. Signature checks
stay on (`allow_unsigned_extensions` is never set): DuckDB verifies every file as it loads it.
No library does this for us; duckdb's own `INSTALL` would download.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import tempfile
from functools import cache
from pathlib import Path

import duckdb

# package suffix -> the file name DuckDB loads (its entry point)
EXTENSIONS = {"ducklake": "ducklake", "sqlite": "sqlite_scanner",
              "postgres": "postgres_scanner", "httpfs": "httpfs", "aws": "aws"}  # fmt: skip
EXTENSIONS_DIR_ENV = "MOESTATS_DUCKDB_EXTENSIONS"


class EngineError(RuntimeError):
    """An extension package is missing or does not match the installed DuckDB."""


def duckdb_version() -> str:
    return duckdb.__version__


@cache
def platform() -> str:
    """DuckDB's name for this machine's platform (linux_amd64, osx_arm64, ...)."""
    with contextlib.closing(duckdb.connect(":memory:")) as conn:
        return conn.execute("PRAGMA platform").fetchone()[0]


def _package_file(name: str, version: str) -> Path:
    module = f"duckdb_extension_{name}"
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise EngineError(
            f"the DuckDB extension package duckdb-extension-{name} is not installed; install "
            f"duckdb-extension-{name}=={version} (pip install -e . installs every one the lake "
            "needs)"
        ) from None
    found = (
        Path(next(iter(package.__path__)))
        / "extensions"
        / f"v{version}"
        / (f"{name}.duckdb_extension")
    )
    if not found.is_file():
        have = importlib.metadata.version(f"duckdb-extension-{name}")
        raise EngineError(
            f"duckdb-extension-{name} {have} does not match DuckDB {version} (an extension loads "
            f"only into the DuckDB it was built for); install duckdb-extension-{name}=={version}"
        )
    return found


def extension_builds() -> dict[str, str]:
    """Each extension package's version, for the doctor."""
    return {name: importlib.metadata.version(f"duckdb-extension-{name}") for name in EXTENSIONS}


@cache
def extension_directory() -> str:
    """A DuckDB `extension_directory` holding this DuckDB's extensions from the packages:
    `$MOESTATS_DUCKDB_EXTENSIONS`, else a folder in the user's cache. Made once per version,
    atomically (processes starting together each build a copy aside and the first rename wins)."""
    version = duckdb_version()
    base = os.environ.get(EXTENSIONS_DIR_ENV, "").strip()
    root = Path(base) if base else _cache_home() / "moestats" / "duckdb-extensions"
    target = root / f"v{version}" / platform()
    wanted = {entry: _package_file(name, version) for name, entry in EXTENSIONS.items()}
    if all(_linked(target / f"{e}.duckdb_extension", f) for e, f in wanted.items()):
        return str(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    for entry, source in wanted.items():
        (aside / f"{entry}.duckdb_extension").symlink_to(source)
    try:
        os.replace(aside, target)  # atomic; refuses a non-empty target
    except OSError:
        complete = all(_linked(target / f"{e}.duckdb_extension", f) for e, f in wanted.items())
        if not complete:  # an outdated folder (a reinstalled package): moved away, then ours
            stale = target.with_name(f".stale-{os.getpid()}-{target.name}")
            with contextlib.suppress(OSError):
                os.replace(target, stale)
                os.replace(aside, target)
            _remove(stale)
        _remove(aside)  # another process's folder won: the same links
    return str(root)


def _linked(path: Path, source: Path) -> bool:
    try:
        return path.resolve(strict=True) == source.resolve(strict=True)
    except OSError:
        return False


def _remove(folder: Path) -> None:
    if not folder.exists():
        return
    for item in folder.iterdir():
        with contextlib.suppress(OSError):
            item.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    if base.is_absolute() and os.access(base if base.exists() else base.parent, os.W_OK):
        return base
    return Path(tempfile.gettempdir()) / f"moestats-{os.getuid()}"


# Optimizers that give wrong rows, silently, on some DuckDB versions: (name, first bad, first
# good, why). `common_subplan` (new in 1.5) merges subplans it wrongly takes as equal (DuckDB
# issues #25819, #24781, #24624) from 1.5.1 to 1.5.5; fixed in 1.5.6. We pin 1.5.5 because its
# extension packages are the newest on PyPI, so every connection we open turns it off: an
# analyst's query through connect() cannot turn it off itself (its configuration is locked).
WRONG_ANSWER_OPTIMIZERS = (
    ("common_subplan", (1, 5, 1), (1, 5, 6), "DuckDB issues #25819, #24781, #24624"),
)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def disabled_optimizers(version: str | None = None) -> list[str]:
    """The optimizers this DuckDB version must run without (WRONG_ANSWER_OPTIMIZERS)."""
    have = _version_tuple(version or duckdb_version())
    return [name for name, bad, good, _ in WRONG_ANSWER_OPTIMIZERS if bad <= have < good]


def optimizer_note(version: str | None = None) -> str:
    """For the doctor: which optimizers are off on this engine, and why."""
    off = disabled_optimizers(version)
    if not off:
        return "no optimizer with known wrong answers on this version"
    why = "; ".join(w for name, _, _, w in WRONG_ANSWER_OPTIMIZERS if name in off)
    return f"optimizer {', '.join(off)} off on every connection (wrong answers: {why})"


def connection_config() -> dict[str, object]:
    """What every DuckDB connection of ours is opened with: the extensions above, nothing
    installed or loaded behind our back, and no optimizer known to answer wrong on this
    version (`disabled_optimizers`)."""
    config: dict[str, object] = {
        "extension_directory": extension_directory(),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if off := disabled_optimizers():
        config["disabled_optimizers"] = ",".join(off)
    return config


def frames_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory connection for our SQL over frames: the same optimizers off as the lake's."""
    off = disabled_optimizers()
    return duckdb.connect(config={"disabled_optimizers": ",".join(off)} if off else {})
