"""The host allocator setting (engine/allocator.py): in a fresh process, a 4 MB tensor freed and
allocated again comes from the heap instead of a new mapping, and freed memory stays with the
process; every dlhpc command makes the setting before torch loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlhpc.engine import allocator

pytestmark = pytest.mark.skipif(
    not allocator.tune_host_allocator(), reason="glibc's mallopt is not available"
)

# mallinfo2 (glibc ≥ 2.33): hblks = blocks served by mmap, arena = bytes of the main heap
# (a heap that shrinks after a free gave memory back to the kernel)
PROBE = r"""
import ctypes, json, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    from dlhpc.engine.allocator import tune_host_allocator
    assert tune_host_allocator()
elif sys.argv[1] == "cli":
    import dlhpc.cli  # what `dlhpc …` runs first
import torch
before = libc.mallinfo2()
x = torch.ones(2**20)  # 4 MiB
during = libc.mallinfo2()
del x
after = libc.mallinfo2()
print(json.dumps({"mapped": during.hblks - before.hblks, "trimmed": during.arena - after.arena}))
"""


def probe(mode: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_glibc_maps_a_4mb_tensor_of_its_own_by_default() -> None:
    got = probe("default")
    assert got["mapped"] == 1  # a fresh mapping, unmapped again when freed


@pytest.mark.parametrize("mode", ["tuned", "cli"])
def test_the_setting_serves_it_from_the_heap_and_keeps_it(mode: str) -> None:
    got = probe(mode)
    assert got["mapped"] == 0 and got["trimmed"] == 0  # from the heap, and kept there


def test_the_setting_is_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert allocator.tune_host_allocator()  # made (here, at import of this module)

    def again() -> None:
        raise AssertionError("mallopt looked up a second time")

    monkeypatch.setattr(allocator, "_glibc_mallopt", again)
    assert allocator.tune_host_allocator()
