"""Background jobs: inference runs in a separate Python process, polled from Slicer's main thread.

Why a process and not a thread: the GUI never waits on torch's GIL-holding kernels, cancel stops the work at
once (the process is ended, whatever it is doing) and nothing it allocated stays in Slicer's memory; the cost,
a second or two to import torch, is small next to inference. The worker prints JSON lines (progress, then
outputs or an error), read by a reader thread into a queue; :meth:`ProcessJob.poll`, called from the main
thread (a Qt timer in the widget, a loop in :meth:`ProcessJob.wait`), delivers progress and, at the end, runs
``finalize`` (which adds the results to the scene) on that same thread. The job's temporary folder is removed
whatever the outcome.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "InferenceWorker.py")
RUNNING, COMPLETED, FAILED, CANCELLED = "running", "completed", "failed", "cancelled"


def pythonExecutable() -> str:
    """Slicer's ``PythonSlicer`` when it exists (a Python with Slicer's environment), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def libraryParentDirectory() -> str:
    """The folder holding the ``DualDINOv3Lib`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("DualDINOv3Lib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("DualDINOv3Lib is not installed; reinstall the DualDINOv3 extension")
    return os.path.dirname(next(iter(spec.submodule_search_locations)))


def errorFromWorker(kind: str, message: str) -> Exception:
    """The library's exception class named ``kind`` (same wording as in the worker), else ``RuntimeError``."""
    from DualDINOv3Lib import errors, runtime

    cls = getattr(errors, kind, None) or (runtime.Cancelled if kind == "Cancelled" else None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(message)
    return RuntimeError(f"{kind}: {message}")


class ProcessJob:
    """One inference run in a worker process. ``state``: running, completed, failed or cancelled.

    ``progress`` (0-1) and ``message`` follow the worker; ``result`` is what ``finalize(outputs)`` returned,
    ``error`` the exception when it failed. Callbacks: ``progressCallback(fraction, message)`` and
    ``completionCallback(job)``, both called from :meth:`poll`, i.e. on the caller's (main) thread.
    """

    def __init__(
        self,
        jobFile: str,
        tempDirectory: str,
        finalize: Callable[[dict], object],
        *,
        python: str | None = None,
        progressCallback: Callable[[float, str], None] | None = None,
        completionCallback: Callable[[ProcessJob], None] | None = None,
    ) -> None:
        self.tempDirectory = tempDirectory
        self.finalize = finalize
        self.progressCallbacks = [progressCallback] if progressCallback else []
        self.completionCallbacks = [completionCallback] if completionCallback else []
        self.state = RUNNING
        self.progress, self.message = 0.0, "starting"
        self.result, self.error = None, None
        self._outputs, self._workerError = None, None
        self._messages: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (libraryParentDirectory(), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._process = subprocess.Popen(
            [python or pythonExecutable(), WORKER_SCRIPT, jobFile],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self._process.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self._process.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, isStdout: bool) -> None:
        for line in stream:
            if isStdout:
                self._messages.put(line)
            else:
                self._stderr.append(line.rstrip())
                del self._stderr[:-50]

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    def poll(self) -> bool:
        """Deliver what the worker reported since the last call; finish the job once it exited. True if finished."""
        if self.finished:
            return True
        exited = self._process.poll() is not None
        if exited:
            for reader in self._readers:
                reader.join()
        while True:
            try:
                line = self._messages.get_nowait()
            except queue.Empty:
                break
            self._handle(line)
        if exited:
            self._finish()
        return self.finished

    def _handle(self, line: str) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            log.info("worker: %s", line.rstrip())
            return
        if "progress" in message:
            self.progress, self.message = float(message["progress"]), str(message.get("message", ""))
            for callback in self.progressCallbacks:
                callback(self.progress, self.message)
        elif message.get("done"):
            self._outputs = message["outputs"]
        elif "error" in message:
            self._workerError = errorFromWorker(message.get("kind", "RuntimeError"), message["error"])

    def _finish(self) -> None:
        try:
            if self._outputs is not None:
                self.result = self.finalize(self._outputs)
                self.state, self.progress, self.message = COMPLETED, 1.0, "done"
            else:
                detail = "\n".join(self._stderr[-10:])
                self.error = self._workerError or RuntimeError(
                    f"the inference process ended with code {self._process.returncode} without a result:\n{detail}"
                )
                self.state, self.message = FAILED, str(self.error)
        except Exception as exc:
            self.error, self.state, self.message = exc, FAILED, str(exc)
        finally:
            self._cleanup()
        self._notify()

    def cancel(self) -> None:
        """Stop the worker now; the scene is left as it was and the temporary files are removed."""
        if self.finished:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        from DualDINOv3Lib.runtime import Cancelled

        self.error, self.state, self.message = Cancelled("cancelled by the user"), CANCELLED, "cancelled"
        self._cleanup()
        self._notify()

    def wait(self, pollInterval: float = 0.05):
        """Block until the job finishes; returns its result or raises its error (also when cancelled)."""
        while not self.poll():
            time.sleep(pollInterval)
        if self.error is not None:
            raise self.error
        return self.result

    def _cleanup(self) -> None:
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.tempDirectory, ignore_errors=True)

    def _notify(self) -> None:
        for callback in self.completionCallbacks:
            try:
                callback(self)
            except Exception:
                log.exception("completion callback of a DualDINOv3 job failed")


class FinishedJob:
    """A job whose result was at hand without a worker (e.g. cached feature maps), with :class:`ProcessJob`'s
    interface: the callbacks run on the first :meth:`poll` (the caller's thread, as for a process job)."""

    def __init__(
        self,
        result,
        *,
        progressCallback: Callable[[float, str], None] | None = None,
        completionCallback: Callable[[FinishedJob], None] | None = None,
        message: str = "done",
    ) -> None:
        self.result, self.error = result, None
        self.state, self.progress, self.message = COMPLETED, 1.0, message
        self._progressCallback, self._completionCallback = progressCallback, completionCallback
        self._notified = False

    @property
    def finished(self) -> bool:
        return True

    def poll(self) -> bool:
        if not self._notified:
            self._notified = True
            if self._progressCallback is not None:
                self._progressCallback(self.progress, self.message)
            if self._completionCallback is not None:
                try:
                    self._completionCallback(self)
                except Exception:
                    log.exception("completion callback of a DualDINOv3 job failed")
        return True

    def cancel(self) -> None:
        """Nothing to stop."""

    def wait(self, pollInterval: float = 0.05):
        self.poll()
        return self.result
