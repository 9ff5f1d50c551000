"""Load a gunicorn configuration exactly as gunicorn does.

gunicorn builds its settings from, in increasing priority: the config file,
``GUNICORN_CMD_ARGS`` and the command line. Reusing ``gunicorn.app.base.
Application.load_config`` keeps that order, the validators, ``chdir`` and
``raw_env`` handling identical to gunicorn's.
"""

import os
import sys

from gunicorn.app.base import Application


class ConfigOnlyApplication(Application):
    """An Application that only loads configuration (it serves nothing)."""

    def __init__(self, argv):
        self._argv = list(argv)
        # The config file's namespace: gunicorn ignores names it does not
        # know, so gdirty's own ``gdirty_*`` settings are read from here.
        self.namespace = {}
        super().__init__("gdirty [gunicorn options]", prog="gdirty")

    def load_config_from_module_name_or_filename(self, location):
        namespace = super().load_config_from_module_name_or_filename(location)
        self.namespace = namespace
        return namespace

    def init(self, parser, opts, args):
        return None

    def load(self):  # pragma: no cover - never served
        raise RuntimeError("gdirty does not load a WSGI application")

    def load_config(self):
        saved = sys.argv
        sys.argv = ["gdirty"] + self._argv
        try:
            super().load_config()
        finally:
            sys.argv = saved


def load_cfg(argv):
    """Return gunicorn's Config for argv (gunicorn-style arguments).

    Exits with status 1 and gunicorn's own message on a bad config, as
    gunicorn does. Applies ``pythonpath`` like gunicorn's Application.run.
    """
    return load_cfg_and_namespace(argv)[0]


def load_cfg_and_namespace(argv):
    """load_cfg, plus the config file's namespace (``{}`` without one)."""
    app = ConfigOnlyApplication(argv)
    cfg = app.cfg
    if cfg.pythonpath:
        for path in cfg.pythonpath.split(","):
            path = os.path.abspath(path)
            if path not in sys.path:
                sys.path.insert(0, path)
    return cfg, app.namespace
