"""Where a sweep's tasks run: in this process (`local`), a process pool here (`processes`), or a Ray cluster (`ray`).

One verb, `map_unordered(fn, tasks, shared)`: call `fn(task, shared)` for every task and yield
`(index, result)` as each finishes. `shared` (what every task needs: evaluation data, models, baselines)
reaches each worker process once, not once per task: in-process it is the object itself, a process
pool hands it to each worker's initializer, Ray puts it in the object store once and each worker
keeps the copy it fetched. A worker that dies mid-task is replaced and its task rerun, up to `retries`
times; a task that still gets no result yields a `TaskFailed` in place of its result, and the rest go on.
Nothing outlives the driver: pool workers die with it, whatever killed it (`_die_with`), and Ray ends the tasks
of a driver that is gone. Work that needs a process of its own from its start (an emulated CPU class: oneDNN reads
its cap once per process) runs in one with `in_fresh_process`, which hands back what it yields, as data.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter, deque
from typing import Any, Callable, Iterator, Protocol, Sequence

from .errors import UserError, one_line

EXECUTORS = ("local", "processes", "ray")
RAY_MISSING = "--executor ray needs Ray: pip install 'quant-explorer[ray]'"
DEFAULT_RETRIES = 2  # reruns of a task whose worker died (a crash, the OOM killer, a lost node)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
CONNECT_TIMEOUT_S = 10  # an unreachable --ray-address is refused after this, not after Ray's minutes of retries

Task = Any
TaskFn = Callable[[Task, Any], Any]


class TaskFailed(Exception):
    """No result for a task: its worker died on every attempt, or the cluster lost it."""


class Executor(Protocol):
    name: str

    def map_unordered(self, fn: TaskFn, tasks: Sequence[Task], shared: Any) -> Iterator[tuple[int, Any]]: ...


class LocalExecutor:
    """In this process, one task after another, in order: what a plain sweep does."""

    name = "local"

    def map_unordered(self, fn: TaskFn, tasks: Sequence[Task], shared: Any) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, fn(task, shared)


# A worker process's copy of `shared`: set once by the pool initializer, or fetched once from Ray's object store.
_SHARED: Any = None
_SHARED_ID: str | None = None


def _die_with(driver: int) -> None:
    """End this worker when its driver dies by any signal, SIGKILL included, instead of living on with its memory:
    Linux's parent-death signal, else a thread that watches the parent."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl (not Linux)
        threading.Thread(target=_watch_parent, args=(driver,), daemon=True).start()
    if os.getppid() != driver:  # it died before the signal was armed
        os._exit(1)


def _watch_parent(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(1)
    os._exit(1)


def _init_process(shared: Any, threads: int, driver: int) -> None:
    global _SHARED
    import torch

    _die_with(driver)
    _SHARED = shared
    torch.set_num_threads(threads)  # workers x threads = cores, as Ray does with OMP_NUM_THREADS
    # Inductor compiles with as many processes: by default it starts a pool per worker, one per core (measured: a
    # warm PT2E row took 3.7 s with one compile thread, 4.4 s with a pool of two, workers sharing 2 cores).
    from torch._inductor import config

    config.compile_threads = threads


def _call_in_process(fn: TaskFn, task: Task) -> Any:
    return fn(task, _SHARED)


class ProcessExecutor:
    """A pool of `workers` spawned processes on this machine; a dead worker's pool is rebuilt and its tasks rerun."""

    name = "processes"

    def __init__(self, workers: int | None = None, retries: int = DEFAULT_RETRIES):
        self.workers = workers or os.cpu_count() or 1
        self.retries = retries

    def map_unordered(self, fn: TaskFn, tasks: Sequence[Task], shared: Any) -> Iterator[tuple[int, Any]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        threads = max(1, (os.cpu_count() or 1) // self.workers)
        queue, attempts = deque(enumerate(tasks)), Counter()
        while queue:
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_process, initargs=(shared, threads, os.getpid()))
            running: dict = {}
            try:
                broken = False
                while (queue or running) and not broken:
                    # At most one task per worker in flight, so a broken pool charges only the tasks that were running.
                    while queue and len(running) < self.workers:
                        i, task = queue.popleft()
                        running[pool.submit(_call_in_process, fn, task)] = (i, task)
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                        broken = True
                        done, _ = wait(running)  # the pool fails every future it still holds
                    for future in done:
                        i, task = running.pop(future)
                        if not isinstance(future.exception(), BrokenProcessPool):
                            yield i, future.result()
                            continue
                        attempts[i] += 1
                        if attempts[i] > self.retries:
                            yield i, TaskFailed(f"worker process died {attempts[i]} times running this task")
                        else:
                            queue.appendleft((i, task))
            except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the workers now, not after their tasks
                for process in list(getattr(pool, "_processes", {}).values()):  # CPython's pool keeps them here
                    process.terminate()
                raise
            finally:
                pool.shutdown(wait=not running, cancel_futures=True)


def in_fresh_process(fn: Callable[..., Iterator], *args: Any) -> Iterator:
    """Run the generator function `fn(*args)` in a fresh spawned process and yield what it yields, as it yields it.
    `fn` and `args` must pickle, and import nothing heavy on the way in: the process is fresh for `fn`'s first line
    (which may set its environment up). What fails in it raises TaskFailed here with its one-line why; it dies with
    this process, and is ended when the caller stops early."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_stream, args=(fn, args, writer, os.getpid()))  # not daemonic: it may pool
    process.start()
    writer.close()  # the child's copy is the only one left: its end is our EOF
    try:
        while True:
            try:
                kind, value = reader.recv()
            except EOFError:
                process.join()
                raise TaskFailed(f"its process died (exit {process.exitcode})") from None
            if kind == "failed":
                raise TaskFailed(value)
            if kind == "done":
                return
            yield value
    finally:
        reader.close()
        if process.is_alive():
            process.terminate()
        process.join()


def _stream(fn: Callable[..., Iterator], args: tuple, conn, driver: int) -> None:
    _die_with(driver)
    try:
        for item in fn(*args):
            conn.send(("item", item))
        conn.send(("done", None))
    except Exception as e:  # told to the caller in one line; a signal just ends the process (EOF there)
        conn.send(("failed", one_line(e)))


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def _call_in_ray(fn: TaskFn, shared_box: list, task: Task) -> Any:
    """Runs on a Ray worker; `shared_box` holds the ObjectRef unresolved, so each worker fetches it once."""
    global _SHARED, _SHARED_ID
    import ray

    ref = shared_box[0]
    if _SHARED_ID != ref.hex():
        _SHARED, _SHARED_ID = ray.get(ref), ref.hex()
    return fn(task, _SHARED)


class RayExecutor:
    """Tasks on a Ray cluster (`address`), or on a Ray instance started here on loopback when there is none.

    Ray reruns a task whose worker died (`max_retries`); `workers` caps the tasks in flight (default: as many
    as the cluster has CPUs, one CPU per task).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, retries: int = DEFAULT_RETRIES):
        if not ray_available():
            raise UserError(RAY_MISSING)
        if address:
            check_reachable(address)
        self.address, self.workers, self.retries = address, workers, retries

    def _connect(self) -> bool:
        """Connect or start Ray unless this process already did; True when this call started it."""
        import ray

        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address:
            ray.init(address=self.address, logging_level=logging.WARNING)
        else:  # a private instance on this machine, on loopback only; workers at our priority (Ray's default: nice 15).
            # address="local": a new instance even where a Ray cluster already runs here (Ray would join that one,
            # and refuse our _system_config); --ray-address is how to use a running cluster.
            ray.init(address="local", num_cpus=self.workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                     logging_level=logging.WARNING, _system_config={"worker_niceness": 0})
        return True

    def map_unordered(self, fn: TaskFn, tasks: Sequence[Task], shared: Any) -> Iterator[tuple[int, Any]]:
        if not tasks:
            return
        import ray
        from ray.exceptions import RayError, RayTaskError

        started = self._connect()
        try:
            remote = ray.remote(num_cpus=1, max_retries=self.retries)(_call_in_ray)
            shared_box = [ray.put(shared)]
            limit = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            queue, running = deque(enumerate(tasks)), {}
            while queue or running:
                while queue and len(running) < limit:
                    i, task = queue.popleft()
                    running[remote.remote(fn, shared_box, task)] = i
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    i = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayTaskError as e:  # fn raised: the same bug would raise in-process
                        raise e.as_instanceof_cause() from None
                    except RayError as e:  # the worker or its node died on every attempt
                        result = TaskFailed(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                    yield i, result
        finally:
            if started:
                ray.shutdown()


def check_reachable(address: str) -> None:
    """A Ray address that nothing answers on is one line within seconds (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with `ray start "
                        f"--head` or fix --ray-address") from None


def make_executor(name: str = "local", address: str | None = None, workers: int | None = None) -> Executor:
    """The executor the CLI names; wrong combinations are one-line UserErrors, before any model work."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if address and name != "ray":
        raise UserError("--ray-address goes with --executor ray")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if name == "local":
        if workers not in (None, 1):
            raise UserError("--workers needs --executor processes or ray (local runs one task at a time)")
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    return RayExecutor(address, workers)
