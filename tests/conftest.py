"""Suite-wide settings: the CPU unless a test is marked ``cuda``, and torch threads sized to the machine.

- Every test runs on the CPU (``torch.cuda.is_available()`` reads False for the whole session, fixtures of
  any scope included), so the suite computes the same
  numbers on a laptop, in CI and on a GPU machine, and a GPU machine does not compile every tiny run
  (``train.compile=auto`` compiles on CUDA). Tests marked ``@pytest.mark.cuda`` see the GPU and are
  skipped cleanly where there is none: ``pytest -m cuda`` runs just them (``make gpu-check`` does).
- torch's intra-op threads under pytest-xdist: torch's own default (the cores it may use) divided among
  the workers, so that ``pytest -n 16`` on a 16-core machine does not run 16 x 16 threads. Never more
  than torch's default: os.cpu_count() can count a host's cores beyond a container's quota, and threads
  beyond the quota spin against each other (seen: tests 30x slower on a 2-core container).
"""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))


_REAL_IS_AVAILABLE = torch.cuda.is_available
_HAS_CUDA = _REAL_IS_AVAILABLE()


def pytest_sessionstart(session):
    # for the whole session, module- and session-scoped fixtures included; marked tests get it back below
    torch.cuda.is_available = lambda: False


def pytest_sessionfinish(session, exitstatus):
    torch.cuda.is_available = _REAL_IS_AVAILABLE


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None and not _HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cuda_only_for_marked_tests(request, monkeypatch):
    if request.node.get_closest_marker("cuda") is not None:
        monkeypatch.setattr(torch.cuda, "is_available", _REAL_IS_AVAILABLE)
