"""Runs moto's own suites with the extension, reruns its failures on plain moto, and judges the difference.

* A test failing with the extension and passing on plain moto is a **regression** (the job fails), unless the
  README lists it as an AWS-faithful deviation (deviations.py).
* A test failing on both is named in the summary, not held against the extension.
* A listed deviation that passes with the extension, fails on plain moto too, or was not run at all is
  **stale** (the job fails): the list must say what is true.
* Collection errors, or pytest not finishing, fail the job.

Outcomes come from the outcomes.py plugin (a JSON file per run), not from pytest's output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import deviations, fetch

EMULATOR = Path(__file__).resolve().parent.parent
REPO = EMULATOR.parent.parent
SUITES = (
    "tests/test_autoscaling",
    "tests/test_ebs",
    "tests/test_ec2/test_instances.py",
    "tests/test_ec2/test_tags.py",
    "tests/test_ec2/test_elastic_block_store.py",
    "tests/test_sqs",
)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moto-suites", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", default=list(SUITES), help="paths or node ids under the sdist")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "moto-suites")
    return parser.parse_args(argv)


def run_pytest(root: Path, targets: list[str], extension: bool, label: str) -> dict[str, Any]:
    """Run pytest on ``targets`` (in ``root``), with or without the extension plugin; its outcomes JSON."""
    with tempfile.TemporaryDirectory(prefix="moto-suites-") as tmp:
        outcomes = Path(tmp) / "outcomes.json"
        arg_file = Path(tmp) / "args.txt"
        arg_file.write_text("\n".join(targets) + "\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pytest", "-c", str(EMULATOR / "moto_suites" / "pytest.ini"),
               "--rootdir", str(root), "-q", "--no-header", "-p", "moto_suites.outcomes"]
        cmd += ["-p", "moto_suites.plugin", "--tb=short"] if extension else ["--tb=no", "-rN"]
        cmd.append(f"@{arg_file}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(EMULATOR)])
        env["MOTO_SUITES_OUTCOMES"] = str(outcomes)
        print(f"\nmoto-suites: {label}: pytest on {len(targets)} target(s)", flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=root, env=env, check=False)
        elapsed = time.monotonic() - started
        if not outcomes.is_file():
            raise RuntimeError(f"{label}: pytest exited {proc.returncode} without outcomes")
        result = json.loads(outcomes.read_text(encoding="utf-8"))
    result["seconds"] = elapsed
    result["returncode"] = proc.returncode
    return result


def _count(tests: dict[str, str], outcome: str) -> int:
    return sum(1 for o in tests.values() if o == outcome)


def _line(label: str, run: dict[str, Any]) -> str:
    tests = run["tests"]
    return (f"  {label}: {len(tests)} tests, {_count(tests, 'passed')} passed, {_count(tests, 'failed')} failed, "
            f"{_count(tests, 'skipped')} skipped ({run['seconds']:.0f} s)")


def judge(ext: dict[str, str], plain: dict[str, str], listed: set[str]) -> dict[str, list[str]]:
    """Classify the extension run's failures given their plain-moto rerun and the listed deviations."""
    failed = {n for n, o in ext.items() if o == "failed"}
    plain_failed = {n for n in failed if plain.get(n) != "passed"}
    stale = []
    for node in sorted(listed):
        if node not in ext:
            stale.append(f"{node} (not run: unknown node id?)")
        elif node not in failed:
            stale.append(f"{node} (passes with the extension)")
        elif node in plain_failed:
            stale.append(f"{node} (fails on plain moto too)")
    return {
        "regressions": sorted(failed - plain_failed - listed),
        "deviations": sorted((failed - plain_failed) & listed),
        "both": sorted(plain_failed - listed),
        "stale": stale,
    }


def main(argv: list[str]) -> int:
    args = _parse(argv)
    version = fetch.pinned_version(EMULATOR / "requirements.txt")
    root = fetch.ensure_tests(version, args.cache)
    listed = deviations.parse(EMULATOR / "README.md")
    started = time.monotonic()
    ext = run_pytest(root, args.suites, extension=True, label="with the extension")
    failed = sorted(n for n, o in ext["tests"].items() if o == "failed")
    plain: dict[str, Any] = {"tests": {}, "errors": [], "seconds": 0.0}
    if failed:
        plain = run_pytest(root, failed, extension=False, label="the failures again, on plain moto")
    # A partial selection only judges the listed deviations it ran.
    scope = set(listed) if args.suites == list(SUITES) else set(listed) & set(ext["tests"])
    verdict = judge(ext["tests"], plain["tests"], scope)
    errors = ext["errors"] + plain["errors"]

    print(f"\n==== moto {version}'s own suites with the ferry extension loaded ====")
    print("  suites: " + " ".join(args.suites))
    print(_line("with the extension", ext))
    if failed:
        print(_line("its failures on plain moto", plain))
    sections = (
        ("AWS-faithful deviations listed in the README (fail with the extension, pass on moto)", "deviations"),
        ("failing on plain moto too (not the extension's doing)", "both"),
        ("REGRESSIONS (fail with the extension, pass on plain moto, not listed)", "regressions"),
        ("STALE deviation entries in the README", "stale"),
    )
    for title, key in sections:
        if verdict[key]:
            print(f"  {title}: {len(verdict[key])}")
            for node in verdict[key]:
                print(f"    {node}")
    for err in errors:
        print(f"  COLLECTION ERROR: {err}")
    bad = bool(verdict["regressions"] or verdict["stale"] or errors or ext["returncode"] not in (0, 1))
    print(f"  total {time.monotonic() - started:.0f} s: {'FAILED' if bad else 'OK'}")
    return 1 if bad else 0
