"""Downloading one file over HTTP(S): resumable, bounded, atomic, with a progress bar.

    sha256 = fetch("http://host/facades_label2photo.pth", Path("cache/facades_label2photo.pth"))

The bytes go to ``DEST.part``; an interrupted transfer (the connection closes early, a read
times out) is resumed from that file with an HTTP ``Range`` request, within the call (a few
tries while each makes progress) and by the next call. A server that ignores ``Range``
(answers 200) is handled by starting over. When the whole file has arrived (its size checked
against ``Content-Length`` / ``Content-Range``) it is renamed to DEST in one step, so DEST is
either absent or complete. Every failure is one `Pix2PixError` line naming the URL and the fix.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..errors import Pix2PixError
from .atomic import fsync_directory
from .model_card import sha256_file

CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per connection attempt and per read: a stalled server fails instead of hanging
MAX_BYTES = 4 << 30  # the largest published generator (pix2pixHD 1024p) is ~0.7 GB
TRIES = 4  # connections per call; later ones resume with Range and are made only while bytes keep arriving

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if needed) so two processes do not write one download; POSIX only."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; concurrent downloads of one name are the user's risk
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def fetch(url: str, dest: str | Path, *, progress: bool = False, manual: str = "", timeout: float = TIMEOUT_S,
          max_bytes: int = MAX_BYTES, tries: int = TRIES) -> str:
    """Download `url` to `dest` (see the module docstring); returns the file's sha256 (hex).

    `manual` completes the errors that a user can get around by fetching the file themselves.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    hint = f" {manual}" if manual else ""
    have, total = _part_size(part), None
    for _ in range(tries):
        before = have
        have, total, complete = _attempt(url, part, have, progress=progress, timeout=timeout, max_bytes=max_bytes,
                                         hint=hint)
        if complete:
            break
        if have <= before:
            break  # no progress: the server keeps closing at the same byte
    else:
        complete = False
    if not complete:
        of = f" of {total:,}" if total else ""
        raise Pix2PixError(f"{url}: the download is incomplete: {have:,}{of} bytes arrived before the server closed "
                           f"the connection; {part} is kept, so running the same command again resumes it.{hint}")
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)
    fsync_directory(dest.parent)
    return sha256_file(dest)


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _attempt(url: str, part: Path, have: int, *, progress: bool, timeout: float, max_bytes: int,
             hint: str) -> tuple[int, int | None, bool]:
    """One connection: (bytes in the .part file, the file's total size when announced, complete?)."""
    headers = {"User-Agent": f"pix2pix/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after `have`: the part is complete, or longer than the file
            match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == have:
                return have, have, True
            part.unlink(missing_ok=True)
            return 0, None, False
        raise Pix2PixError(f"{url}: the server answered HTTP {exc.code} {exc.reason}.{hint}") from None
    except urllib.error.URLError as exc:
        raise Pix2PixError(f"{url}: cannot connect ({exc.reason}); check the network connection.{hint}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise Pix2PixError(f"{url}: cannot connect ({type(exc).__name__}: {exc}); check the network "
                           f"connection.{hint}") from None
    with response:
        start, total = 0, None
        length = response.headers.get("Content-Length")
        if response.status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                part.unlink(missing_ok=True)  # a range we did not ask for: start again from byte 0
                return 0, None, False
            start = have
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif length is not None and length.isdigit():
            total = int(length)  # 200: the whole file (a server that ignores Range sends it from the start)
        if total is not None and total > max_bytes:
            raise Pix2PixError(f"{url}: the server announces {total:,} bytes, more than the {max_bytes:,} a model "
                               f"file may have; check the address.{hint}")
        have, interrupted, overflow = start, False, False
        limit = min(total, max_bytes) if total is not None else max_bytes
        with open(part, "ab" if start else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                disable=not progress, desc=part.name[:-len(".part")], leave=False) as bar:
            try:
                while block := response.read(CHUNK):
                    if have + len(block) > limit:
                        overflow = True
                        break
                    have += len(block)
                    f.write(block)
                    bar.update(len(block))
            except (TimeoutError, ConnectionError, http.client.IncompleteRead):
                interrupted = True  # what arrived is kept and the next try resumes from it
    if overflow:
        part.unlink(missing_ok=True)
        announced = "it announced" if total is not None else "a model file may have"
        raise Pix2PixError(f"{url}: the server sent more than the {limit:,} bytes {announced}; check the "
                           f"address.{hint}")
    # Without a size to check (no Content-Length), the end of the stream is the end of the file; the
    # caller's torch.load then checks that the file is whole.
    return have, total, not interrupted and (total is None or have == total)
