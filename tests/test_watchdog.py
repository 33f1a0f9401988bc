"""The memory watchdog against real processes: one that stays under the cap lives, one that passes it is killed."""

import subprocess
import sys
import time

from harness.measure.watchdog import MemoryWatchdog, rss_mb

GROW = "import time; held = bytearray({mb} * 1024 * 1024); held[::4096] = b'x' * len(held[::4096]); time.sleep(30)"


def _child(mb: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", GROW.format(mb=mb)])


def test_only_the_process_over_the_cap_is_killed_and_the_rss_that_passed_it_is_kept():
    small, large = _child(1), _child(200)
    told = []
    watchdog = MemoryWatchdog([small, large], cap_mb=120, on_over=lambda i, rss: told.append((i, rss)))
    watchdog.start()
    try:
        large.wait(timeout=20)
        time.sleep(0.2)
        assert small.poll() is None  # under the cap: still running
        assert list(watchdog.over_mb) == [1] and 120 < watchdog.over_mb[1] < 400
        assert told == [(1, watchdog.over_mb[1])]
        assert watchdog.passed(1).startswith("exceeded memory cap (") and watchdog.passed(0) == ""
    finally:
        watchdog.stop()
        for proc in (small, large):
            proc.kill()
            proc.wait()
    assert rss_mb(large.pid) is None  # gone: no figure, never an error
