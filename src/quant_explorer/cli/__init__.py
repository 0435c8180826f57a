"""The `quant-explorer` command line: thin commands over the library (parse, call, print), heavy imports inside
the commands so `--help` is instant. `app.py` holds the app and how it speaks; `experiments.py` the commands
that compute (`answers.py`: what they say of a row), `job.py` the whole job (`run`), `views.py` those that show."""

from . import experiments, job, views  # noqa: F401  (the commands register themselves on `app`)
from .app import app, main  # noqa: F401
