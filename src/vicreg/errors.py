"""Errors the ``vicreg`` command reports in one line (besides vicreg.config.ConfigError): no torch imported here,
so the command line stays quick to start."""


class JobStopped(RuntimeError):
    """A data-parallel job lost a process (or a collective timed out): said in one line with the resume command."""


class FollowedRank0(RuntimeError):
    """This process of a data-parallel job stops because rank 0 failed (e.g. a non-finite loss); rank 0 says why."""


class DownloadFailed(OSError):
    """A dataset or weights download failed (no network, a checksum): one line naming what and where."""


class NodeConfigError(ValueError):
    """A set-up error every process of one node has alike (e.g. more processes than GPUs): local rank 0 says it."""


def first_line(e: BaseException, limit: int | None = 200, default: str = "") -> str:
    """The first line of ``e``'s message (``default`` when it has none), cut to ``limit`` characters: what a
    one-line error quotes of an exception from below (torch, PIL, pickle)."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else default)[:limit]


MEMORY_MARKS = ("can't allocate memory", "out of memory", "Storage size calculation overflowed",
                "Overflow when unpacking")  # what torch's allocators say of a size too large for the memory


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` says that something was too large for the memory: a MemoryError, torch's CPU or CUDA
    allocator, or a tensor size beyond 64 bits (a huge ``data.image_size``, ``model.expander``...)."""
    return isinstance(e, MemoryError) or any(mark in str(e) for mark in MEMORY_MARKS)
