# An ordinary gunicorn config with a dirty pool. gunicorn runs it with
# --dirty-workers 0 (gdirty is the arbiter); gdirty reads the same file.
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
