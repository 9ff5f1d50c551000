"""Python side of gdirty.

gdirty (Go) owns the socket gunicorn's HTTP workers talk to; this package
runs the parts that must be Python: evaluating ``gunicorn.conf.py`` with
gunicorn's own config machinery (``gdirty_pyshim.config``) and hosting the
user's ``DirtyApp`` classes in worker processes (``gdirty_pyshim.worker``).
It depends on nothing but gunicorn itself.
"""

__version__ = "0.1.0"
