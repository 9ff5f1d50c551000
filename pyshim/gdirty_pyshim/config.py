"""``python -m gdirty_pyshim.config [gunicorn options]``

Evaluates the gunicorn configuration and prints, as one JSON object on
stdout, the effective settings gdirty needs. Every dirty app is imported to
read its ``workers`` class attribute, so an unimportable app fails here,
with its name, before any worker starts. Exit status: 0 ok, 1 bad config
(gunicorn's own message), 2 bad dirty app.
"""

import json
import sys
import traceback
import types

import importlib
import sys as _sys

from gunicorn.dirty.app import get_app_workers_attribute, parse_dirty_app_spec

from .gconfig import load_cfg_and_namespace
from .logspec import describe as describe_logging

HOOKS = ("on_dirty_starting", "dirty_post_fork", "dirty_worker_init",
         "dirty_worker_exit")


def _hook_defined(cfg, name):
    """True when the user's config replaced gunicorn's no-op default."""
    setting = cfg.settings[name]
    default = setting.default
    value = setting.get()
    return getattr(value, "__code__", None) is not getattr(default, "__code__", None)


GDIRTY_PREFIX = "gdirty_"


class SettingError(Exception):
    """A gdirty_* value that cannot be handed to gdirty as data."""


def gdirty_settings(namespace):
    """The config file's ``gdirty_*`` names (gdirty's own settings, which
    gunicorn ignores), as plain JSON data; gdirty validates the values.
    Modules are not settings: master mode's ``import gdirty_pyshim.master``
    binds the name ``gdirty_pyshim`` in the config file."""
    return {name: _plain(name, value) for name, value in namespace.items()
            if name.startswith(GDIRTY_PREFIX) and not isinstance(value, types.ModuleType)}


def _plain(name, value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingError(f"Invalid value for {name}: {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    raise SettingError(f"Invalid value for {name}: {value!r} "
                       f"({type(value).__name__}; use a number, a string, a boolean or a list)")


def describe(cfg, config_path):
    apps = []
    for spec in cfg.dirty_apps:
        try:
            import_path, workers = parse_dirty_app_spec(spec)
        except Exception as e:
            raise AppError(spec, config_path, e) from e
        source = "spec" if workers is not None else "default"
        if workers is None:
            try:
                workers = get_app_workers_attribute(import_path)
            except Exception as e:
                raise AppError(spec, config_path, e) from e
            if workers is not None:
                source = "class"
                if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
                    raise AppError(spec, config_path, ValueError(
                        f"class attribute workers must be a positive int or None, got {workers!r}"))
        apps.append({"spec": spec, "import_path": import_path,
                     "workers": workers, "source": source,
                     "stashes": _stashes(import_path)})

    return {
        "config": config_path,
        "dirty_apps": apps,
        "dirty_workers": cfg.dirty_workers,
        "dirty_threads": cfg.dirty_threads,
        "dirty_timeout": cfg.dirty_timeout,
        "dirty_graceful_timeout": cfg.dirty_graceful_timeout,
        "env": dict(cfg.env or {}),
        "chdir": cfg.chdir,
        "pythonpath": cfg.pythonpath,
        "proc_name": cfg.proc_name,
        "uid": cfg.uid,
        "gid": cfg.gid,
        "umask": cfg.umask,
        "initgroups": cfg.initgroups,
        "worker_tmp_dir": cfg.worker_tmp_dir,
        "loglevel": cfg.loglevel,
        "errorlog": cfg.errorlog,
        "hooks": {name: _hook_defined(cfg, name) for name in HOOKS},
        "log": _logging(cfg),
    }


def _logging(cfg):
    """gunicorn's error logger as the config sets it up (gdirty follows it);
    a config whose logging gunicorn itself cannot set up fails there too."""
    try:
        return describe_logging(cfg)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _stashes(import_path):
    """The app class's ``stashes`` attribute: stash tables that must exist
    from the start (gunicorn documents this but never creates them)."""
    module_path, class_name = import_path.rsplit(":", 1)
    module = _sys.modules.get(module_path) or importlib.import_module(module_path)
    tables = getattr(getattr(module, class_name), "stashes", None) or []
    return [t for t in tables if isinstance(t, str)]


class AppError(Exception):
    def __init__(self, spec, config_path, cause):
        self.spec = spec
        self.config_path = config_path
        self.cause = cause
        where = f" (from {config_path})" if config_path else ""
        msg = getattr(cause, "message", None) or str(cause)
        super().__init__(f"cannot load dirty app {spec!r}{where}: "
                         f"{type(cause).__name__}: {msg}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cfg, namespace = load_cfg_and_namespace(argv)
    config_path = cfg.config
    try:
        own = gdirty_settings(namespace)
    except SettingError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        info = describe(cfg, config_path)
        info["gdirty"] = own
    except AppError as e:
        cause = e.cause.__cause__
        if cause is None:
            print(f"Error: {e}", file=sys.stderr)
        else:
            detail = "".join(traceback.format_exception_only(type(cause), cause)).strip()
            print(f"Error: {e}\n  caused by: {detail}", file=sys.stderr)
        sys.exit(2)
    json.dump(info, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
