"""Several worker processes serving one port (SO_REUSEPORT), forked and supervised by one parent process."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from chassis.config import ConfigurationError

logger = logging.getLogger(__name__)

# Real-time signals queue, unlike SIGUSR1: several workers reporting at the same moment are all counted.
READY_SIGNAL = signal.SIGRTMIN
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WAITED_SIGNALS = {signal.SIGCHLD, READY_SIGNAL, *STOP_SIGNALS}

PR_SET_PDEATHSIG = 1
# Loaded before any fork: the children only call into it.
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Worker:
    """What a worker process knows of itself: its index (0 .. count-1), the port every worker serves."""

    index: int
    count: int
    port: int
    supervisor_pid: int

    def ready(self) -> None:
        """Tell the supervisor this worker serves; the first worker's report lets the others start."""
        if os.getppid() == self.supervisor_pid:  # not an orphan reporting to whoever adopted it
            os.kill(self.supervisor_pid, READY_SIGNAL)


WorkerMain = Callable[[Worker], int]


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, so that every worker can bind the same port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int, setting: str) -> socket.socket:
    """Checks nobody serves host:port, then holds it (bound, not listening) for the workers; port 0 picks one.

    The check binds without SO_REUSEPORT: a socket that would share the port (another instance of this process,
    a stranger with SO_REUSEPORT) makes it fail, so a second instance stops here instead of silently taking a
    share of the first one's connections.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
            probe.bind(address)
            port = probe.getsockname()[1]
        return reuse_port_socket(host, port)
    except OSError as error:
        reason = "in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        raise ConfigurationError(f"{setting}: {host}:{port} cannot be served ({reason})") from None


def exit_code(wait_status: int) -> int:
    """A worker's wait status as a shell reports it: its exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


def supervise(count: int, *, host: str, port: int, setting: str, main: WorkerMain, stop_timeout_seconds: float) -> int:
    """Forks `count` workers running `main` on one port and returns the exit code for the parent.

    The port is checked and reserved first (ConfigurationError naming `setting` when it cannot be). The first
    worker starts alone and the others once it reports ready, so start-up work shared through the databases
    (schema migrations, tables, the control plane's defaults) runs once. SIGTERM or SIGINT sends SIGTERM to every
    worker; workers still running `stop_timeout_seconds` later are killed. A worker exiting without being asked
    stops the others and the parent exits with that worker's code (1 if it was 0): the orchestrator restarts the
    whole process, as it would a single-process service that crashed.
    Call before anything creates a gRPC object or starts a thread: the workers are forked from this process.
    """
    reservation = reserve_port(host, port, setting)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)
    try:
        return _Supervisor(count, reservation, main, stop_timeout_seconds).run()
    finally:
        reservation.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


class _Supervisor:
    def __init__(self, count: int, reservation: socket.socket, main: WorkerMain, stop_timeout: float) -> None:
        self._count = count
        self._reservation = reservation
        self._port: int = reservation.getsockname()[1]
        self._main = main
        self._stop_timeout = stop_timeout
        self._pid = os.getpid()
        self._workers: dict[int, int] = {}  # pid -> index
        self._ready: set[int] = set()
        self._stopping = False
        self._deadline: float | None = None
        self._exit_code = 0

    def run(self) -> int:
        logger.info("starting workers", extra={"workers": self._count, "port": self._port})
        self._start(0)
        while self._workers:
            info = self._wait()
            if info is None:  # the stop timeout passed
                logger.error("workers did not stop in time; killing them", extra={"pids": sorted(self._workers)})
                self._signal_all(signal.SIGKILL)
                self._deadline = None
            elif info.si_signo in STOP_SIGNALS:
                self._stop(info.si_signo)
            elif info.si_signo == READY_SIGNAL:
                self._on_ready(info.si_pid)
            self._reap()  # on every wake-up: SIGCHLDs of workers exiting together merge into one
        return self._exit_code

    def _wait(self) -> signal.struct_siginfo | None:
        if self._deadline is None:
            return signal.sigwaitinfo(WAITED_SIGNALS)
        return signal.sigtimedwait(WAITED_SIGNALS, max(0.0, self._deadline - time.monotonic()))

    def _start(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            self._become_worker(index)
        self._workers[pid] = index
        logger.info("worker started", extra={"worker": index, "pid": pid})

    def _become_worker(self, index: int) -> None:
        code = 1
        try:
            self._reservation.close()
            # A worker whose supervisor is killed outright stops gracefully rather than serving unsupervised.
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != self._pid:
                os._exit(1)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent's KeyboardInterrupt handler is not ours
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WAITED_SIGNALS)
            code = self._main(Worker(index, self._count, self._port, self._pid))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # never return into the supervisor's loop

    def _on_ready(self, pid: int) -> None:
        index = self._workers.get(pid)
        if index is None or pid in self._ready:
            return
        self._ready.add(pid)
        logger.info("worker serving", extra={"worker": index, "pid": pid})
        if index == 0 and not self._stopping:
            for later in range(1, self._count):
                self._start(later)
        if len(self._ready) == self._count:
            logger.info("all workers serving", extra={"workers": self._count, "pids": sorted(self._ready)})

    def _stop(self, signum: int) -> None:
        if not self._stopping:
            logger.info("shutdown requested; stopping workers", extra={"signal": signal.Signals(signum).name})
            self._stopping = True
            self._deadline = time.monotonic() + self._stop_timeout
        # SIGTERM whatever came: a terminal's Ctrl-C reaches the workers too, and a second SIGINT would make uvicorn
        # drop its connections instead of draining them.
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):  # exited; reaped on this round
                os.kill(pid, signum)

    def _reap(self) -> None:
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self._workers.pop(pid, None)
            if index is None:
                continue
            self._ready.discard(pid)
            code = exit_code(status)
            stopped_as_asked = self._stopping and code in (0, *(128 + signum for signum in STOP_SIGNALS))
            if stopped_as_asked:
                logger.info("worker stopped", extra={"worker": index, "pid": pid, "exit_code": code})
                continue
            logger.error("worker exited unexpectedly", extra={"worker": index, "pid": pid, "exit_code": code})
            if self._exit_code == 0:
                self._exit_code = code or 1
            if not self._stopping:
                self._stop(signal.SIGTERM)
