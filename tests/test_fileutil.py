"""Tests for satcodec.fileutil: atomic writes, special-file destinations, permissions."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading

import pytest

from satcodec import fileutil
from satcodec.errors import ConfigError, SatcodecError
from satcodec.fileutil import atomic_open, atomic_path, atomic_write_bytes

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX special files")


def _proc_umask() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return None


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "sub" / "out.bin"  # missing folder created
    atomic_write_bytes(dest, b"one")
    atomic_write_bytes(dest, b"two")
    assert dest.read_bytes() == b"two"
    assert os.listdir(dest.parent) == ["out.bin"]
    with pytest.raises(KeyError):
        with atomic_open(dest) as fh:
            fh.write(b"three")
            raise KeyError("boom")
    assert dest.read_bytes() == b"two" and os.listdir(dest.parent) == ["out.bin"]


# --- special destinations -------------------------------------------------------------------
@posix_only
@pytest.mark.skipif(not ROOT, reason="mknod of a character device needs root")
def test_character_device_is_written_not_replaced(tmp_path):
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null clone
    rdev = os.stat(null).st_rdev
    atomic_write_bytes(null, b"x" * 100_000)
    with atomic_open(null, "w") as fh:
        fh.write("text")
    with atomic_path(null, ".tif") as tmp:
        # a writer that needs a name gets a temp file outside the destination's folder
        assert tmp.parent != null.parent
        tmp.write_bytes(b"y" * 1000)
    st = os.stat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev
    assert os.listdir(tmp_path) == ["null"]


@posix_only
def test_fifo_is_written_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # a reader that never blocks: the writes below are smaller than the pipe buffer
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write_bytes(fifo, b"hello ")
        with atomic_path(fifo, ".tif") as tmp:
            tmp.write_bytes(b"world")
        got = b""
        while True:
            try:
                chunk = os.read(rfd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        os.close(rfd)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got == b"hello world"
    assert os.listdir(tmp_path) == ["pipe"]


def test_directory_destination_is_refused(tmp_path):
    target = tmp_path / "outdir"
    target.mkdir()
    (target / "keep.txt").write_text("k")
    for write in (
        lambda: atomic_write_bytes(target, b"data"),
        lambda: atomic_path(target).__enter__(),
    ):
        with pytest.raises(ConfigError, match="is a directory") as ei:
            write()
        assert str(target) in str(ei.value)
        assert isinstance(ei.value, SatcodecError) and isinstance(ei.value, ValueError)
    assert target.is_dir() and os.listdir(target) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["outdir"]  # no temp file left


@posix_only
def test_socket_destination_is_refused():
    folder = tempfile.mkdtemp(prefix="sc", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(folder, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        with pytest.raises(ConfigError, match="is a socket"):
            atomic_write_bytes(path, b"data")
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert os.listdir(folder) == ["s"]
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(folder)


@posix_only
@pytest.mark.skipif(not ROOT, reason="mknod of a block device needs root")
def test_block_device_destination_is_refused(tmp_path):
    dev = tmp_path / "blk"
    os.mknod(dev, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device node, never used
    with pytest.raises(ConfigError, match="is a block device"):
        atomic_write_bytes(dev, b"data")
    with pytest.raises(ConfigError, match="is a block device"):
        with atomic_path(dev):
            pytest.fail("must refuse before the write")
    assert stat.S_ISBLK(os.stat(dev).st_mode)
    assert os.listdir(tmp_path) == ["blk"]


def test_parent_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    for dest in (tmp_path / "afile" / "out.bin", tmp_path / "afile" / "deeper" / "out.bin"):
        with pytest.raises(ConfigError, match="is not a folder") as ei:
            atomic_write_bytes(dest, b"data")
        assert str(tmp_path / "afile") in str(ei.value)
    assert (tmp_path / "afile").read_text() == "x"


def test_unwritable_folder_is_a_config_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ConfigError, match="Permission denied") as ei:
        atomic_write_bytes(tmp_path / "out.bin", b"data")
    assert str(tmp_path) in str(ei.value)


@posix_only
@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_folder_is_a_config_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="Permission denied"):
            atomic_write_bytes(folder / "out.bin", b"data")
    finally:
        folder.chmod(0o700)


# --- permissions and durability --------------------------------------------------------------
@posix_only
def test_existing_file_keeps_its_mode(tmp_path):
    dest = tmp_path / "product.tif"
    dest.write_bytes(b"old")
    dest.chmod(0o640)
    atomic_write_bytes(dest, b"new")
    assert dest.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o640


@posix_only
def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    orig = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return orig(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_bytes(tmp_path / "out.bin", b"data")
    assert synced == [False, True]  # the file, then its folder


@posix_only
def test_concurrent_writes_never_touch_the_umask(tmp_path, monkeypatch):
    old = os.umask(0o027)  # set before the test's writes; restored at the end
    try:
        expected = 0o666 & ~0o027
        assert fileutil.current_umask() == (0o027 if _proc_umask() is not None else old)
        if _proc_umask() is None:
            expected = 0o666 & ~old

        def no_umask(*args):
            raise AssertionError("os.umask called while writing")

        monkeypatch.setattr(os, "umask", no_umask)
        stop = threading.Event()
        bad: list[str] = []
        errors: list[BaseException] = []

        def inspect():
            while not stop.is_set():
                for name in os.listdir(tmp_path):
                    if name.startswith("."):
                        continue  # a temp file (0600 until renamed)
                    try:
                        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
                    except FileNotFoundError:
                        continue
                    if mode != expected:
                        bad.append(f"{name}: {oct(mode)}")
                umask = _proc_umask()
                if umask is not None and umask != 0o027:
                    bad.append(f"process umask {oct(umask)}")

        def work(i):
            try:
                for j in range(25):
                    atomic_write_bytes(tmp_path / f"w{i}_{j % 5}.bin", b"x" * j)
                    with atomic_path(tmp_path / f"p{i}_{j % 5}.tif") as tmp:
                        tmp.write_bytes(b"y")
            except BaseException as exc:  # reported below
                errors.append(exc)

        inspector = threading.Thread(target=inspect)
        inspector.start()
        workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        stop.set()
        inspector.join()
        assert not errors, errors[0]
        assert not bad, bad[:5]
        names = [n for n in os.listdir(tmp_path) if not n.startswith(".")]
        assert len(names) == 8 * 10 and len(os.listdir(tmp_path)) == 80
        assert all(stat.S_IMODE(os.stat(tmp_path / n).st_mode) == expected for n in names)
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_fifo_without_reader_is_refused_not_waited_on(tmp_path):
    """A named pipe nobody reads would block the writer (and a batch behind it) forever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="no process is reading"):
        atomic_write_bytes(fifo, b"x")
    with pytest.raises(ConfigError, match="no process is reading"):
        with atomic_path(fifo, ".tif") as tmp:
            tmp.write_bytes(b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
