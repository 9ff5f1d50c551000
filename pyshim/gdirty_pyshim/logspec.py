"""How gunicorn would log gdirty's lines, for the Go side to follow.

gunicorn's logger class is set up from the config exactly as gunicorn's
master does it (``errorlog``, ``loglevel``, ``logconfig``,
``logconfig_dict``, ``logconfig_json``), then the ``gunicorn.error``
logger is read back: its effective level and, for every handler a record
reaches, where it writes (stderr, stdout or a file), its level and its
``%``-style format and date format. gdirty formats its own lines with them,
so they look like gunicorn's and go where gunicorn's go.
"""

import logging
import os
import sys

ERROR_LOGGER = "gunicorn.error"


def describe(cfg):
    capture = bool(cfg.capture_output)
    # capture_output would dup2 the errorlog over this process's stdout,
    # which carries the loader's answer: gdirty applies it itself.
    cfg.set("capture_output", False)
    try:
        try:
            cfg.logger_class(cfg)
        except Exception:
            from gunicorn.glogging import Logger
            Logger(cfg)
    finally:
        cfg.set("capture_output", capture)

    logger = logging.getLogger(ERROR_LOGGER)
    handlers, unsupported = [], []
    node = logger
    while node is not None:
        for h in node.handlers:
            spec = _handler(h)
            if spec is None:
                unsupported.append(type(h).__name__)
            else:
                handlers.append(spec)
        node = node.parent if node.propagate else None
    if not handlers and not unsupported:
        # Python's last resort: WARNING and up, bare message, on stderr.
        handlers.append({"kind": "stderr", "path": "", "level": logging.WARNING,
                         "format": "%(message)s", "datefmt": None})
    return {
        "level": logger.getEffectiveLevel(),
        "errorlog": cfg.errorlog,
        "capture_output": capture and cfg.errorlog != "-",
        "handlers": handlers,
        "unsupported": unsupported,
    }


def _handler(h):
    fmt = h.formatter or logging.Formatter()
    style = getattr(fmt, "_style", None)
    if style is not None and not isinstance(style, logging.PercentStyle):
        return None  # {} and $ styles: not followed
    spec = {"level": h.level, "format": getattr(fmt, "_fmt", None) or "%(message)s",
            "datefmt": fmt.datefmt, "path": ""}
    if isinstance(h, logging.FileHandler):
        spec["kind"] = "file"
        spec["path"] = os.path.abspath(h.baseFilename)
        return spec
    if isinstance(h, logging.StreamHandler):
        stream = getattr(h, "stream", None)
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        if fd == sys.stderr.fileno():
            spec["kind"] = "stderr"
        elif fd == sys.stdout.fileno():
            spec["kind"] = "stdout"
        else:
            return None
        return spec
    if isinstance(h, logging.NullHandler):
        spec["kind"] = "null"
        return spec
    return None
