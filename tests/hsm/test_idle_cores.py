"""Reading how many cores sat idle, from /proc/stat's text."""

from __future__ import annotations

import os
from pathlib import Path

from hsm.idle_cores import IdleCores, cpu_times, idle_between

STAT = "cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n"


def stat(user: int, system: int, idle: int, iowait: int = 0) -> str:
    return STAT.format(user=user, system=system, idle=idle, iowait=iowait)


def test_idle_and_total_come_from_the_all_cores_line() -> None:
    assert cpu_times(stat(100, 50, 800, 50)) == (850, 1000)
    assert cpu_times("cpu0 1 2 3 4\n") is None
    assert cpu_times("") is None


def test_idle_cores_between_two_readings() -> None:
    assert idle_between((800, 1000), (1000, 1400), 2) == 1.0  # 200 of 400 jiffies idle, 2 cores
    assert idle_between((800, 1000), (800, 1400), 2) == 0.0
    assert idle_between((800, 1000), (800, 1000), 2) == 0.0  # no time passed: nothing known idle


def test_the_reading_is_renewed_once_per_window(tmp_path: Path) -> None:
    path, now = tmp_path / "stat", [0.0]
    path.write_text(stat(100, 100, 800))
    idle = IdleCores(cores=4, stat_path=str(path), clock=lambda: now[0])
    assert idle() == 4.0  # nothing measured yet: as if idle
    path.write_text(stat(400, 400, 1000))  # 600 busy, 200 idle jiffies since
    assert idle() == 4.0  # read again only after the window
    now[0] = 0.1
    assert idle() == 1.0
    path.write_text(stat(400, 400, 1800))  # all idle since
    now[0] = 0.12
    assert idle() == 1.0
    now[0] = 0.2
    assert idle() == 4.0


def test_without_proc_stat_the_machine_counts_as_idle(tmp_path: Path) -> None:
    idle = IdleCores(cores=2, stat_path=str(tmp_path / "missing"), clock=lambda: 1e9)
    assert idle() == 2.0


def test_this_machine_reads_within_its_cores() -> None:
    idle = IdleCores()
    for _ in range(3):
        assert 0.0 <= idle() <= (os.cpu_count() or 1)
