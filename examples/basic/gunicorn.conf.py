# An ordinary gunicorn config with a dirty pool, plus the one line that makes
# gunicorn's own master run gdirty as its dirty arbiter:
import gdirty_pyshim.master  # noqa: F401  (gdirty is the dirty arbiter)

bind = "127.0.0.1:8000"
workers = 2
wsgi_app = "wsgi:app"

dirty_apps = [
    "dirty_app:EchoApp",
    "dirty_app:ReverseApp",
]
dirty_workers = 2
dirty_threads = 2
dirty_timeout = 30
