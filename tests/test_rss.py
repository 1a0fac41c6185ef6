"""pipelines.rss: the peak RSS of a stage counts the largest process of the tree."""

from __future__ import annotations

import subprocess
import sys
import time

from pipelines.rss import PeakRss, tree_rss


def test_tree_rss_sees_a_child_larger_than_this_process():
    own_before, _ = tree_rss()
    size = own_before + (256 << 20)  # larger than this (test) process, whatever it holds
    # A child that touches `size` bytes and waits: the tree's largest process is it.
    child = subprocess.Popen([sys.executable, "-c",
                              f"import time; b = bytearray({size}); b[::4096] = b'x' * len(b[::4096]); "
                              "print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        with PeakRss(interval=0.05) as p:
            time.sleep(0.3)
        own, largest = tree_rss()
        assert largest >= size > own
        assert p.peak >= size
    finally:
        child.kill()
        child.wait()
    assert own_before > 0


def test_peak_rss_of_this_process_alone():
    with PeakRss(interval=0.05) as p:
        block = bytearray(150 << 20)
        block[::4096] = b"y" * len(block[::4096])
        time.sleep(0.3)
        del block
    assert p.peak_mb >= 150
