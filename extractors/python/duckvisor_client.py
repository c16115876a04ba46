"""duckvisor protocol client for Python children (stdlib only).

Under duckvisor the supervisor spawns the script with a Node IPC channel whose fd is in
NODE_CHANNEL_FD; messages are JSON objects, one per line (protocol version 1). This module:

- sends ``hello`` on the first call (or explicitly with ``hello()``);
- beats from a daemon thread every heartbeat_timeout/3. The thread needs the GIL, so it stops when
  the interpreter freezes (C code holding the GIL, SIGSTOP, a deadlock). A main loop that is stuck
  but alive keeps beating; the supervisor's stall clock catches that, because ``progress`` stops;
- ``progress(done, total=None, unit='items')`` drives the stall clock;
- ``log(level, msg)`` sends a structured log line;
- ``stop_requested()`` turns true when the supervisor sends ``{"type": "stop"}``;
- exits the process when the channel reaches EOF (the supervisor is gone).

Not under duckvisor (no NODE_CHANNEL_FD), the same calls print ``[HEARTBEAT] done/total`` lines to
stdout, which duckvisor also understands when it supervises a command without IPC.
"""

import json
import os
import socket
import sys
import threading
import time

PROTOCOL_VERSION = 1
_LEVELS = ("debug", "info", "warn", "error")


class _Client:
    def __init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._hello_sent = False
        self._last_print = 0.0
        self._done = 0
        self._total = None
        self.extractor = os.environ.get("DUCKVISOR_JOB") or os.path.basename(sys.argv[0] or "python") or "python"
        timeout_ms = float(os.environ.get("DUCKVISOR_HEARTBEAT_TIMEOUT_MS") or 30000)
        self.interval = max(0.01, timeout_ms / 3000.0)
        fd = os.environ.get("NODE_CHANNEL_FD")
        self._sock = None
        self._writer = None
        if fd is not None and fd.strip() != "":
            self._sock = socket.socket(fileno=int(fd))
            self._writer = self._sock.makefile("wb", buffering=0)
            threading.Thread(target=self._read_loop, name="duckvisor-reader", daemon=True).start()
        threading.Thread(target=self._beat_loop, name="duckvisor-heartbeat", daemon=True).start()

    @property
    def supervised(self):
        return self._writer is not None

    def _send(self, message):
        if self._writer is None:
            return
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            try:
                self._writer.write(data)
            except (BrokenPipeError, ConnectionResetError, OSError):
                # The supervisor is gone: nobody is watching, so do not keep running unsupervised.
                os._exit(70)

    def _read_loop(self):
        reader = self._sock.makefile("rb")
        while True:
            try:
                line = reader.readline()
            except OSError:
                line = b""
            if not line:
                # EOF: the supervisor died or closed the channel. Exit at once (no cleanup to race with).
                sys.stderr.write("duckvisor_client: IPC channel closed by the supervisor; exiting\n")
                sys.stderr.flush()
                os._exit(70)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == "stop":
                self._stop.set()

    def _beat_loop(self):
        while True:
            time.sleep(self.interval)
            if self.supervised:
                if self._hello_sent:
                    self._send({"type": "heartbeat"})
            else:
                self._print_heartbeat()

    def _print_heartbeat(self):
        total = "?" if self._total is None else _number(self._total)
        sys.stdout.write("[HEARTBEAT] %s/%s\n" % (_number(self._done), total))
        sys.stdout.flush()
        self._last_print = time.monotonic()

    def hello(self, extractor=None):
        if extractor:
            self.extractor = str(extractor)[:200]
        if self._hello_sent:
            return
        self._hello_sent = True
        self._send({"type": "hello", "protocol": PROTOCOL_VERSION, "extractor": self.extractor, "pid": os.getpid()})

    def progress(self, done, total=None, unit="items"):
        self.hello()
        self._done = done
        self._total = total
        if self.supervised:
            message = {"type": "progress", "done": done, "unit": str(unit)[:64] or "items"}
            if total is not None:
                message["total"] = total
            self._send(message)
        elif time.monotonic() - self._last_print >= 1.0 or (total is not None and done >= total):
            self._print_heartbeat()

    def log(self, level, msg):
        level = level if level in _LEVELS else "info"
        self.hello()
        if self.supervised:
            self._send({"type": "log", "level": level, "msg": str(msg)[:60000]})
        else:
            sys.stderr.write("[%s] %s\n" % (level, msg))
            sys.stderr.flush()

    def stop_requested(self):
        return self._stop.is_set()


def _number(value):
    return str(int(value)) if float(value).is_integer() else str(value)


_client = None
_client_lock = threading.Lock()


def _get():
    global _client
    with _client_lock:
        if _client is None:
            _client = _Client()
        return _client


def hello(extractor=None):
    """Announce this process to the supervisor (done automatically by the first progress/log)."""
    _get().hello(extractor)


def progress(done, total=None, unit="items"):
    """Report that `done` of `total` items are finished. `done` must not decrease."""
    _get().progress(done, total, unit)


def log(level, msg):
    """Send a log line; level is one of debug, info, warn, error."""
    _get().log(level, msg)


def stop_requested():
    """True once the supervisor asked for a clean stop; long loops should check it and return."""
    return _get().stop_requested()


def supervised():
    """True when running under duckvisor with an IPC channel."""
    return _get().supervised
