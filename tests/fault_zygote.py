"""A pre-imported parent for the fault-injection tests: forks one crysloop CLI run per request.

Importing torch, pymatgen, Prefect and the flows costs seconds of CPU per process; this process pays it once, while
still single-threaded, then forks a fresh child for each run. Protocol: one JSON line per request on stdin,
``{"args": [...], "env": {...}, "log": path}``; one JSON line back, ``{"rc": exit status}`` (137: killed by a
fault point).
"""

from __future__ import annotations

import json
import os
import sys
import threading

import torch

import crysloop.flows.campaign  # noqa: F401 - imported before forking, that is the point
from crysloop.cli import main

torch.set_num_threads(1)
assert threading.active_count() == 1, "fork only from a single-threaded process"
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.update(request["env"])
        code = 1
        try:
            main(request["args"])  # exits with the command's status
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
