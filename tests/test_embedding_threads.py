"""CPU threads of the encoder: the cores other processes leave idle, measured on this machine."""

import subprocess
import sys
import time

import pytest
import torch

from recbole_bifair.embedding.threads import CpuThreads, _allowed_cpus, _busy_seconds, threads_for


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("idle, max_threads, expected", [
    (2.0, 2, 2), (1.8, 2, 2), (1.6, 2, 1), (1.0, 2, 1), (0.1, 2, 1), (-0.5, 2, 1),
    (7.9, 8, 8), (5.2, 8, 5), (3.0, 2, 2),
])
def test_threads_for_idle_cores(idle, max_threads, expected):
    assert threads_for(idle, max_threads) == expected


def test_busy_seconds_grow_with_real_work():
    if _busy_seconds(_allowed_cpus()) is None:
        pytest.skip("no /proc/stat on this system")
    start, cpu = _busy_seconds(_allowed_cpus()), time.process_time()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    worked = time.process_time() - cpu
    assert _busy_seconds(_allowed_cpus()) - start >= worked - 0.05  # jiffies: 10 ms resolution


def test_fixed_count_is_used_as_is_and_restored(two_torch_threads):
    with CpuThreads(fixed=1) as threads:
        assert torch.get_num_threads() == 1
        threads.update()
        threads.update()
    assert threads.used == {1: 2} and torch.get_num_threads() == 2


def test_restored_after_an_error(two_torch_threads):
    with pytest.raises(RuntimeError):
        with CpuThreads(fixed=1):
            raise RuntimeError("encoding failed")
    assert torch.get_num_threads() == 2


def test_a_core_taken_by_another_process_is_left_to_it(two_torch_threads):
    cpus = _allowed_cpus()
    if _busy_seconds(cpus) is None or len(cpus) != 2:
        pytest.skip("needs /proc/stat and exactly two usable cores")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        with CpuThreads(interval=0.2) as threads:
            assert torch.get_num_threads() == 1  # the other core is busy with the burner
            time.sleep(0.25)
            threads.update()  # re-measured while the burner still runs
            assert torch.get_num_threads() == 1
    finally:
        burner.kill()
        burner.wait()
    assert torch.get_num_threads() == 2
