"""Puts the gdirty binaries into the wheel (hatchling build hook).

There are two: ``gdirty``, built with ``-tags lean`` (no NATS client, no
Prometheus client or HTTP server linked), and ``gdirty-cluster``, with all
of it, which the lean one execs whenever a cluster setting or
``--metrics-bind`` is given.

* ``GDIRTY_WHEEL_BINARY=/path/to/gdirty``, ``GDIRTY_WHEEL_CLUSTER_BINARY``
  (default: that path with ``-cluster``) and ``GDIRTY_WHEEL_PLATFORM=<tag>``
  (what ``make wheel`` sets, once per platform): those prebuilt static
  binaries, and the wheel is tagged ``py3-none-<tag>``.
* Otherwise, in a checkout with Go on PATH: ``go build`` (CGO_ENABLED=0) of
  ``../cmd/gdirty`` for this machine, both builds, tagged for this machine.
* ``GDIRTY_BUILD_BINARY=0``, or no Go / no Go sources: the Python package
  alone (a pure wheel); gdirty is then found on PATH or via GDIRTY_BINARY.

The binaries go to the wheel's scripts, so installing the wheel puts
``gdirty`` and ``gdirty-cluster`` side by side in the environment's ``bin/``
(on PATH in an active venv).
"""

import os
import shutil
import subprocess
import tempfile

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel" or version == "editable":
            return
        binary = os.environ.get("GDIRTY_WHEEL_BINARY")
        platform = os.environ.get("GDIRTY_WHEEL_PLATFORM")
        if binary:
            if not platform:
                raise RuntimeError("GDIRTY_WHEEL_BINARY needs GDIRTY_WHEEL_PLATFORM (a platform tag)")
            cluster = os.environ.get("GDIRTY_WHEEL_CLUSTER_BINARY") or binary + "-cluster"
            for name, path in (("GDIRTY_WHEEL_BINARY", binary), ("GDIRTY_WHEEL_CLUSTER_BINARY", cluster)):
                if not os.path.isfile(path):
                    raise RuntimeError(f"{name}: no such file: {path}")
            self._ship(build_data, binary, cluster, f"py3-none-{platform}")
            return
        if os.environ.get("GDIRTY_BUILD_BINARY", "1") == "0":
            return
        source = os.path.dirname(self.root)
        go = shutil.which("go")
        if go is None or not os.path.isfile(os.path.join(source, "go.mod")):
            self.app.display_warning("gdirty: no Go toolchain or Go sources: "
                                     "building the Python package without the binary")
            return
        self._tmp = tempfile.mkdtemp(prefix="gdirty-build-")
        out = os.path.join(self._tmp, "gdirty")
        env = dict(os.environ, CGO_ENABLED="0")
        ldflags = f"-s -w -X main.version={self.metadata.version}"
        for tags, path in ((["-tags", "lean,urfave_cli_no_docs"], out), (["-tags", "urfave_cli_no_docs"], out + "-cluster")):
            subprocess.run([go, "build", "-trimpath", *tags, "-ldflags", ldflags, "-o", path, "./cmd/gdirty"],
                           cwd=source, env=env, check=True)
        self._ship(build_data, out, out + "-cluster", None)

    def _ship(self, build_data, binary, cluster, tag):
        build_data["pure_python"] = False
        if tag is None:
            build_data["infer_tag"] = False
            build_data["tag"] = "py3-none-" + _this_platform()
        else:
            build_data["tag"] = tag
        build_data["shared_scripts"][binary] = "gdirty"
        build_data["shared_scripts"][cluster] = "gdirty-cluster"

    def finalize(self, version, build_data, artifact_path):
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _this_platform():
    """This machine's most general platform tag (the binary is static)."""
    from packaging.tags import platform_tags
    tags = list(platform_tags())
    return tags[-1] if tags else "any"
