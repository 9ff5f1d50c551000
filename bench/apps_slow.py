"""A DirtyApp whose module import takes 1 s and whose init() takes 200 ms
(what an app importing torch and loading a small model looks like to the
arbiter). BENCH_SLOW_IMPORT_S / BENCH_SLOW_INIT_S override the two delays
(the smoke run shortens them; the full run uses the defaults)."""

import os
import time

from gunicorn.dirty import DirtyApp

IMPORT_S = float(os.environ.get("BENCH_SLOW_IMPORT_S", "1.0"))
INIT_S = float(os.environ.get("BENCH_SLOW_INIT_S", "0.2"))

time.sleep(IMPORT_S)  # "import torch"


class SlowApp(DirtyApp):
    def init(self):
        time.sleep(INIT_S)  # "load the model"

    def echo(self, value):
        return value

    def pid(self):
        return os.getpid()
