"""The test sources of the pinned moto: read the pin, download the sdist from PyPI, extract its tests/ once.

Cache layout under ``<repo>/build/moto-suites/``: ``moto-<version>.tar.gz`` (the sdist, as pip downloads it)
and ``moto-<version>/tests/`` (only the sdist's ``tests/``, never its ``moto/`` package: the installed, patched
moto must be the one the tests import). A ``.complete`` marker makes an interrupted extraction start again;
other versions' copies are removed when the pin changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

PIN = re.compile(r"^\s*moto(?:\[[^\]]*\])?==(?P<version>[0-9][^\s;#]*)", re.MULTILINE)


def pinned_version(requirements: Path) -> str:
    """The exact moto version pinned in ``requirements`` (``moto[...]==X``); ValueError without one."""
    match = PIN.search(requirements.read_text())
    if match is None:
        raise ValueError(f"{requirements}: no exact moto pin (moto==X or moto[extras]==X)")
    return match.group("version")


def _download(version: str, cache: Path) -> Path:
    sdist = cache / f"moto-{version}.tar.gz"
    if sdist.is_file():
        return sdist
    cmd = [sys.executable, "-m", "pip", "download", f"moto=={version}", "--no-binary", ":all:",
           "--no-deps", "-q", "-d", str(cache)]
    print(f"moto-suites: downloading the moto {version} sdist from PyPI", flush=True)
    subprocess.run(cmd, check=True)
    if not sdist.is_file():
        raise FileNotFoundError(f"pip download left no {sdist}")
    return sdist


def _extract_tests(sdist: Path, version: str, dest: Path) -> None:
    prefix = f"moto-{version}/tests/"
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        if not members:
            raise ValueError(f"{sdist}: no {prefix} in the sdist")
        for member in members:
            member.name = member.name[len(f"moto-{version}/"):]
        tar.extractall(tmp, members=members, filter="data")
    (tmp / ".complete").write_text(version + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def ensure_tests(version: str, cache: Path) -> Path:
    """The directory holding ``tests/`` of moto ``version`` (downloaded and extracted only when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"moto-{version}"
    if not (root / ".complete").is_file():
        sdist = _download(version, cache)
        print(f"moto-suites: extracting tests/ of {sdist.name}", flush=True)
        _extract_tests(sdist, version, root)
    for old in cache.iterdir():
        if old.name.startswith("moto-") and old.name not in (root.name, f"moto-{version}.tar.gz"):
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
    return root
