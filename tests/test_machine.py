"""keep_freed_memory: a freed block is reused instead of page-faulted in again, and nothing computed changes.

Each case runs in a child process: malloc's settings are process-wide and cannot be undone.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's")

CHILD = r"""
import hashlib, json, resource, sys
import torch
torch.set_num_threads(1)
from pipeline.machine import keep_freed_memory
from pipeline.train.losses import token_cross_entropy
kept = keep_freed_memory()

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

# what training steps do to memory: a 64 MB block written, then freed, again and again. glibc's heap
# takes a few rounds to settle (an aligned block does not always fit the hole the last one left); then
# count ten more
for _ in range(10):
    torch.empty(16 * 2**20).fill_(1.0)
before = faults()
for _ in range(10):
    torch.empty(16 * 2**20).fill_(1.0)
block_faults = faults() - before

# a few steps of a vocabulary projection under the training loss: logits and gradient of 19 MB each
torch.manual_seed(0)
proj = torch.nn.Linear(64, 8000)
opt = torch.optim.AdamW(proj.parameters(), lr=1e-3)
for step in range(4):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(3, 200, 64, generator=g)
    target = torch.randint(0, 8000, (3, 200), generator=g)
    target[:, 150:] = 0
    opt.zero_grad()
    loss, count = token_cross_entropy(proj(x), target, pad_id=0, label_smoothing=0.1)
    (loss / count).backward()
    opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in proj.parameters())).hexdigest()
print(json.dumps({"kept": kept, "block_faults": block_faults, "digest": digest}))
"""


def run_child(keep: bool) -> dict:
    # allocator settings inherited from the caller would change what is measured
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE"))}
    env.update(PIPELINE_KEEP_FREED_MEMORY="1" if keep else "0", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict:
    return {keep: run_child(keep) for keep in (True, False)}


def test_the_switch_is_honoured(runs):
    assert runs[True]["kept"] is True
    assert runs[False]["kept"] is False


def test_a_freed_block_is_reused_not_faulted_in_again(runs):
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")  # one block's pages, at the base page size
    # kept: once the heap has settled, the blocks reuse pages already there
    assert runs[True]["block_faults"] < pages // 4
    # by default every fresh 64 MB block is a new mapping whose pages fault on first write (fewer faults
    # where the kernel backs it with huge pages, so the two runs are held against each other)
    assert runs[False]["block_faults"] > 10 * runs[True]["block_faults"] + 100


def test_the_weights_are_bit_identical_either_way(runs):
    assert runs[True]["digest"] == runs[False]["digest"]
