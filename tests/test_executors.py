"""Executors: a sweep run by a process pool or a Ray cluster gives the rows the in-process sweep gives,
survives a worker killed mid-task, and is written by the driver alone."""

import os
import signal
from functools import partial
from pathlib import Path

import pytest

from quant_explorer.backends import get_config
from quant_explorer.data import EvalData
from quant_explorer.errors import UserError
from quant_explorer.executors import LocalExecutor, ProcessExecutor, TaskFailed, in_fresh_process, make_executor
from quant_explorer.models import load_model
from quant_explorer.results import load_results
from quant_explorer.sweep import run_sweep

CONFIGS = ["fp32_baseline", "ort_u8_minmax_qdq_per_channel_rr", "ort_s8asym_minmax_qoperator_per_channel"]
KILLED = "ort_u8_minmax_qdq_per_channel_rr"  # its worker dies on the first attempt
# What must not depend on where a row was computed (timings and thread counts may).
SAME = ("accuracy", "correct", "predictions", "confusion_matrix", "per_class_accuracy", "delta_pp",
        "agreement_with_fp32", "calibration", "checks", "size_bytes", "model_weights_sha256")


def _die_once(marker: str, fn, task, shared):
    """Wraps the sweep's task function: the KILLED config's worker process kills itself the first time."""
    if task.config.name == KILLED and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return fn(task, shared)


class DieOnce:
    """An executor whose KILLED task loses its worker once: a crash, the OOM killer, a preempted node."""

    def __init__(self, inner, marker: Path):
        self.inner, self.marker, self.name = inner, marker, inner.name

    def map_unordered(self, fn, tasks, shared):
        return self.inner.map_unordered(partial(_die_once, str(self.marker), fn), tasks, shared)


def _yields(values: list, fail: str | None = None, die: bool = False):
    """Run in a fresh process: its pid, then `values`, then a failure (`fail`), or its death (`die`), or forever."""
    yield os.getpid()
    yield from values
    if fail:
        raise UserError(fail)
    while die or values == ["forever"]:
        os.kill(os.getpid(), signal.SIGKILL) if die else signal.pause()


@pytest.mark.process
def test_a_fresh_process_hands_back_what_it_yields_as_it_yields_and_its_failure_in_one_line():
    pid, *values = in_fresh_process(_yields, [1, "two", {"three": 3}])
    assert pid != os.getpid() and values == [1, "two", {"three": 3}]
    seen = []
    with pytest.raises(TaskFailed, match="^UserError: no data here$"):
        seen.extend(in_fresh_process(_yields, [1], "no data here"))
    assert seen[1:] == [1]  # what it yielded before it failed came back as it came
    with pytest.raises(TaskFailed, match=r"its process died \(exit -9\)"):
        list(in_fresh_process(_yields, [], None, True))
    forever = in_fresh_process(_yields, ["forever"])
    pid = next(forever)
    forever.close()  # the caller stops early: the process is ended, not left behind
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def local_rows(tiny):
    """`tiny`'s model and data, and the rows the local (in-process) executor gives.

    Every sweep here shares one artifacts folder, so the FP32 ONNX export is made once; each config is
    still quantized and evaluated anew by whichever worker runs it.
    """
    root = tiny
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANT_EXPLORER_CACHE", str(root / "cache"))
        mp.setenv("QUANT_EXPLORER_ARTIFACTS", str(root / "artifacts"))
        model, data = load_model("resnet8", root / "resnet8.pt"), EvalData.load(root / "data")
        rows = {key: row for key, row, _ in run_sweep([model], [get_config(c) for c in CONFIGS], data, 20, [0],
                                                      root / "local.json", executor=LocalExecutor())}
    return root, model, data, rows


def sweep_killing_one_worker(local_rows, executor, tmp_path, monkeypatch):
    root, model, data, expected = local_rows
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(root / "artifacts"))
    marker, results = tmp_path / "killed-once", tmp_path / "results.json"
    rows = {key: row for key, row, _ in run_sweep([model], [get_config(c) for c in CONFIGS], data, 20, [0], results,
                                                  executor=DieOnce(executor, marker))}
    assert marker.exists(), "the killed task never ran"
    assert set(rows) == set(expected) == set(load_results(results)["entries"])
    for key, row in rows.items():
        assert row.error is None, row.error
        assert {f: getattr(row, f) for f in SAME} == {f: getattr(expected[key], f) for f in SAME}, key
        alternates = {name: alt.accuracy for name, alt in row.alternates.items()}
        assert alternates == {name: alt.accuracy for name, alt in expected[key].alternates.items()}
        if "fp32" not in key:
            assert row.executor == executor.name
    return rows


@pytest.mark.process
def test_processes_rerun_a_killed_worker_and_give_the_local_rows(local_rows, tmp_path, monkeypatch):
    sweep_killing_one_worker(local_rows, ProcessExecutor(workers=2), tmp_path, monkeypatch)


def test_executor_choice_errors_are_one_line_user_errors(monkeypatch):
    assert make_executor().name == "local" and make_executor("processes", workers=3).workers == 3
    for args, needle in [(("threads",), "choose one of local, processes, ray"),
                         (("local", "head:6379"), "--ray-address goes with --executor ray"),
                         (("local", None, 4), "--workers needs --executor processes or ray"),
                         (("processes", None, 0), "--workers must be at least 1")]:
        with pytest.raises(UserError, match=needle):
            make_executor(*args)
    monkeypatch.setattr("quant_explorer.executors.ray_available", lambda: False)
    with pytest.raises(UserError, match=r"pip install 'quant-explorer\[ray\]'"):
        make_executor("ray")


@pytest.mark.process
def test_ray_reruns_a_killed_worker_ignores_a_cluster_running_here_and_stops_only_its_own(local_rows, tmp_path,
                                                                                        monkeypatch):
    """A real `ray start --head` on loopback named by RAY_ADDRESS, stopped through its own PID afterwards. Without
    --ray-address the executor starts an instance of its own (joining that cluster would refuse its _system_config),
    reruns the killed worker's task, gives the local rows and stops its instance; an instance it did not start (this
    process joined to that cluster) it leaves running."""
    ray = pytest.importorskip("ray")
    import operator
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    from quant_explorer.executors import RayExecutor

    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    address_file = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # where `ray start` says where it is
    address_before = address_file.read_bytes() if address_file.exists() else None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.skip("ray start --head did not come up in 2 minutes")
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        sweep_killing_one_worker(local_rows, RayExecutor(workers=2), tmp_path, monkeypatch)
        assert not ray.is_initialized() and head.poll() is None  # its own instance stopped, the cluster still there
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        try:
            assert sorted(RayExecutor(workers=1).map_unordered(operator.add, [1, 2], 10)) == [(0, 11), (1, 12)]
            assert ray.is_initialized()  # an instance the executor did not start is left running
        finally:
            ray.shutdown()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(60)
        if address_before is None:  # killed by PID, Ray leaves its address behind: later ray.init() would join it
            address_file.unlink(missing_ok=True)
        else:
            address_file.write_bytes(address_before)


# A driver with two pool workers, each stuck in a task: it writes their pids and the resource tracker's, then waits.
DRIVER = """
import multiprocessing.resource_tracker as tracker, os, sys, time
from quant_explorer.executors import ProcessExecutor

def stuck(task, shared):
    open(os.path.join(shared, f"worker-{os.getpid()}"), "w").close()
    time.sleep(300)

if __name__ == "__main__":
    tracker.ensure_running()
    open(os.path.join(sys.argv[1], f"tracker-{tracker._resource_tracker._pid}"), "w").close()
    list(ProcessExecutor(2).map_unordered(stuck, [0, 1], sys.argv[1]))
"""


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.process
def test_pool_workers_and_the_resource_tracker_die_with_a_sigkilled_driver(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("*-*")]
    assert len(pids) == 3, "the driver did not start both workers"
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 20
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in pids if not _gone(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "processes outlived their driver"
