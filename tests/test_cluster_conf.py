"""Cluster settings from gunicorn.conf.py, and the lean gdirty's hand-over.

bin/gdirty is the lean build (-tags lean: no NATS client, no metrics endpoint); any
cluster setting (or --metrics-bind) makes it exec bin/gdirty-cluster in place (same PID). The
settings gunicorn lacks are read from gunicorn.conf.py as gdirty_* names;
flags win over the TOML, which wins over the config file.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import gversions

# Binary frames (protocol v1, gunicorn 25.1+); the cluster carries v1 only.
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from clustertools import LIVENESS, cluster_status, wait_hosted
from conftest import ECHO, PYTHON, dirty_config, wait_until
from clustertools import launcher, nats, nats_bin  # noqa: F401,F811 - fixtures


def test_node_joins_from_gunicorn_conf_alone(nats, launcher, gdirty_bin):
    extra = f"gdirty_cluster = {nats.url!r}\ngdirty_cluster_liveness = {LIVENESS!r}\n"
    g = launcher.start(dirty_config([ECHO], workers=1, extra=extra), workers=1)
    wait_hosted(nats, ECHO)
    (node,) = cluster_status(nats)
    # The lean gdirty exec'd gdirty-cluster: same process, other binary.
    assert node["pid"] == g.pid
    assert Path(f"/proc/{g.pid}/exe").resolve() == gdirty_bin.with_name("gdirty-cluster").resolve()
    assert "unknown gdirty setting" not in g.stderr()


def test_flag_beats_gunicorn_conf(nats, launcher):
    extra = f"gdirty_cluster = {nats.url!r}\ngdirty_cluster_name = 'from-conf'\n"
    launcher.start(dirty_config([ECHO], workers=1, extra=extra), workers=1,
                   args=["--cluster-name", "from-flag", "--cluster-liveness", LIVENESS])
    wait_until(lambda: any(ECHO in (n.get("apps") or []) for n in cluster_status(nats, name="from-flag")),
               30, "the node to host EchoApp in cluster from-flag", interval=0.2)
    assert cluster_status(nats, name="from-conf") == []


def test_lean_gdirty_without_gdirty_cluster_says_so(gdirty_bin, tmp_path):
    lone = tmp_path / "gdirty"
    shutil.copy(gdirty_bin, lone)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(dirty_config([ECHO], workers=1))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for why, args in (("--cluster", ["--config", str(conf), "--python", PYTHON, "--cluster", "nats://127.0.0.1:1"]),
                      ("--cluster", ["status", "--cluster", "nats://127.0.0.1:1"]),
                      ("--metrics-bind", ["--config", str(conf), "--python", PYTHON, "--metrics-bind", "127.0.0.1:0"])):
        res = subprocess.run([str(lone), *args], capture_output=True, text=True, timeout=60,
                             env=env, cwd=str(tmp_path))
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"gdirty: {why}: this is the lean gdirty (no cluster support, no metrics endpoint)"), lines
        assert "gdirty-cluster is neither next to" in lines[0] and "nor on PATH" in lines[0]
    assert not os.path.exists(tmp_path / "gdirty-cluster")


def test_toml_beats_gunicorn_conf_and_unknown_names_warn(nats, launcher, tmp_path):
    toml = tmp_path / "gdirty.toml"
    toml.write_text("cluster_name = 'from-toml'\n")
    # The import binds the name gdirty_pyshim (a module): no setting, no warning.
    extra = (f"import gdirty_pyshim\ngdirty_cluster = {nats.url!r}\n"
             "gdirty_cluster_name = 'from-conf'\ngdirty_clustr_name = 'typo'\n")
    g = launcher.start(dirty_config([ECHO], workers=1, extra=extra), workers=1,
                       args=["--gdirty-config", str(toml), "--cluster-liveness", LIVENESS])
    wait_until(lambda: any(ECHO in (n.get("apps") or []) for n in cluster_status(nats, name="from-toml")),
               30, "the node to host EchoApp in cluster from-toml", interval=0.2)
    log = g.stderr()
    assert "unknown gdirty setting gdirty_clustr_name (ignored)" in log
    assert "gdirty_pyshim" not in log
