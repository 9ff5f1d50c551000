#!/usr/bin/env python3
"""CI check that the package still builds from source where Go is present.

    scripts/source_build_check.py

``pip wheel ./pyshim`` with Go on PATH (no prebuilt binaries given): the
build hook compiles both gdirty builds for this machine, so the wheel must
be tagged for this platform, carry ``gdirty`` and ``gdirty-cluster`` as
scripts, and each must run and report the package's version. Exit status 0
when all holds.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fail(msg):
    print(f"source build: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if not shutil.which("go"):
        fail("no Go toolchain on PATH (this check is for source builds)")
    version = re.search(r'^version = "(.*)"', (ROOT / "pyshim" / "pyproject.toml").read_text(), re.M).group(1)
    tmp = Path(tempfile.mkdtemp(prefix="gdirty-source-build-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GDIRTY_")}
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                              "--no-deps", "-w", str(tmp), str(ROOT / "pyshim")],
                             env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            fail(f"pip wheel ./pyshim exited {res.returncode}:\n{res.stderr}")
        wheels = list(tmp.glob("gdirty-*.whl"))
        if len(wheels) != 1:
            fail(f"expected one gdirty wheel, got {[w.name for w in wheels]}")
        wheel = wheels[0]
        if wheel.name.endswith("-none-any.whl"):
            fail(f"{wheel.name} is a pure wheel: the build hook did not compile gdirty")
        with zipfile.ZipFile(wheel) as z:
            for name in ("gdirty", "gdirty-cluster"):
                member = f"gdirty-{version}.data/scripts/{name}"
                if member not in z.namelist():
                    fail(f"{wheel.name} lacks {member}")
                out = tmp / name
                out.write_bytes(z.read(member))
                out.chmod(0o755)
                res = subprocess.run([str(out), "--version"], capture_output=True, text=True, timeout=30)
                if res.returncode != 0 or version not in res.stdout:
                    fail(f"{name} --version: exit {res.returncode}, {res.stdout.strip()!r} (want {version})")
        print(f"source build: ok ({wheel.name}: gdirty and gdirty-cluster {version})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
