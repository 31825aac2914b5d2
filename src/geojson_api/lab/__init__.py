"""The load-test lab: the study's scenario matrix against several servers, in one run.

``geojson-api bench`` makes the sample data, starts every *target* (the
study's baseline on the Flask development server, our app under Gunicorn, the
full stack and Nginx serving the same files statically), drives each of them
with Locust (``files/locustfile.py``) or wrk, samples the target's process
tree meanwhile, and writes a report with the study's tables and graphs.

Modules, in the order a run uses them:

- :mod:`.command`: options, exit codes.
- :mod:`.procs`: starting children and stopping every one of them by PID.
- :mod:`.targets`, :mod:`.stacktarget`: the servers under test.
- :mod:`.matrix`: scenarios, durations, selection.
- :mod:`.sampling`, :mod:`.watch`: what the target and the client did meanwhile.
- :mod:`.locustrun`, :mod:`.wrk`: the two load generators and their statistics.
- :mod:`.runner`: one run after the other, with progress.
- :mod:`.report`, :mod:`.study`, :mod:`.graphs`, :mod:`.tables`: JSON, CSV,
  Markdown and PNG.
- ``files/``: what child processes run (the Locust users, the study's baseline
  app, the bare WSGI app): package data, found by :func:`.targets.lab_file`, so
  an installed package runs the lab without a source checkout.

It needs the ``bench`` extra (psutil, locust, matplotlib) and, for some
targets, nginx, redis-server and wrk. The benchmark scripts in ``loadtest/``
(``wholefile.py``, ``features.py``) are built on these modules: the same
processes, targets, sampling, wrk runs, machine information and tables.
"""

from __future__ import annotations

from ..errors import LabError as LabError  # every module of the lab raises it from here
