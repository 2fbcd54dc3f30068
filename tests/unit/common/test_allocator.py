"""``reuse_freed_memory``: glibc keeps freed blocks for the next allocation instead of mapping
fresh pages (and faulting them in) for every large tensor."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")

PROBE = textwrap.dedent("""
    import resource, sys, torch
    from lavis.common.allocator import reuse_freed_memory
    if sys.argv[1] == "reuse":
        assert reuse_freed_memory() and reuse_freed_memory()  # a second call is a no-op that says so
    for _ in range(8):  # 64 MiB blocks, until the heap has settled (a few steps of growth)
        torch.ones(16 << 20).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(16 << 20).sum()  # allocate, touch every page, free
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_large_blocks_are_reused_instead_of_faulted_in_again():
    pages = 10 * (64 << 20) // 4096  # ten 64 MiB tensors, in 4 KiB pages
    default, reused = page_faults("default"), page_faults("reuse")
    assert default > pages // 2  # glibc maps each one afresh: a fault per page touched
    assert reused < pages // 20  # the freed block serves the next tensor


@pytest.mark.parametrize("setting,calls", [(True, 1), (False, 0)])
def test_the_runner_applies_it_when_training_on_a_cpu(tmp_path, monkeypatch, setting, calls):
    from lavis.runners.runner_epoch import RunnerEpoch
    from tests.toy.components import build_runner

    seen = []
    monkeypatch.setattr("lavis.runners.base_runner.reuse_freed_memory", lambda: seen.append(1) or True)
    build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1, reuse_cpu_memory=setting)
    assert len(seen) == calls
