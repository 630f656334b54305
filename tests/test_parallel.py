"""Framed files through the CLI: -T N gives the same bytes as one process, streaming through pipes,
a cut-off stream, info and t; frames as tasks on a local Dask cluster (two worker processes),
including a worker that dies mid-task."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nncompress
from nncompress import parallel

TEXT = b"".join(b"%d: the quick brown fox jumps over the lazy dog %d times.\n" % (i, i * i % 97)
                for i in range(3000))            # about 180 KB


def nnc(*args, input=None, stdin=None, cwd=None):
    p = subprocess.run([sys.executable, "-m", "nncompress", *args], input=input, stdin=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, cwd=cwd)
    return p.returncode, p.stdout, p.stderr.decode()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("par")
    (d / "a.txt").write_bytes(TEXT)
    code, _, err = nnc("c", "-1", "-T", "1", "--frame-size", "48K", "a.txt", "one.nnc", cwd=d)
    assert code == 0, err
    return d


def test_two_workers_give_the_same_bytes(work):
    code, _, err = nnc("c", "-1", "-v", "-T", "2", "--frame-size", "48K", "a.txt", "two.nnc",
                       cwd=work)
    assert code == 0, err
    assert "4 frames of up to 49152 bytes, 2 workers" in err
    assert (work / "two.nnc").read_bytes() == (work / "one.nnc").read_bytes()
    code, out, err = nnc("d", "-T", "2", "-c", "two.nnc", cwd=work)
    assert code == 0 and out == TEXT, err
    code, out, err = nnc("t", "-v", "-T", "0", "two.nnc", cwd=work)
    assert code == 0 and "OK" in err and "4 frames" in err, err


def test_info_shows_the_frames(work):
    code, out, err = nnc("info", "one.nnc", cwd=work)
    assert code == 0, err
    text = out.decode()
    assert "format version   5" in text and "frames           4 of up to 49152 bytes" in text
    assert "level            -1" in text and f"original size    {len(TEXT)}" in text


def test_streaming_through_pipes(work):
    """cat | nncompress c -1 - | nncompress d -: the same bytes as from a file."""
    cmd = (f"cat a.txt | {sys.executable} -m nncompress c -1 --frame-size 48K - "
           f"| tee piped.nnc | {sys.executable} -m nncompress d - > back.txt")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=work, capture_output=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert (work / "back.txt").read_bytes() == TEXT
    assert (work / "piped.nnc").read_bytes() == (work / "one.nnc").read_bytes()


def test_cut_off_stream_writes_the_complete_frames(work):
    blob = (work / "one.nnc").read_bytes()
    cut = blob[: len(blob) * 3 // 5]                  # inside the third frame
    code, out, err = nnc("d", "-", input=cut, cwd=work)
    assert code == 1 and out == TEXT[: 2 * 49152], err
    assert len(err.strip().splitlines()) == 1
    assert "2 complete frames (98304 bytes) recovered, written to standard output" in err
    # to a file: nothing is left behind
    code, _, err = nnc("d", "-", "cut.txt", input=cut, cwd=work)
    assert code == 1 and "nothing written" in err and not (work / "cut.txt").exists()


def test_concatenated_files_through_the_cli(work):
    both = work / "both.nnc"
    both.write_bytes((work / "one.nnc").read_bytes() * 2)
    code, out, err = nnc("d", "-T", "2", "-c", str(both))
    assert code == 0 and out == TEXT + TEXT, err


def test_old_versions_still_decode_through_the_cli(work):
    old = work / "old.nnc"
    old.write_bytes(nncompress.compress(TEXT[:5000], level=1))       # a version-4 file
    for stdin in (False, True):
        args = ("d", "-c", "-") if stdin else ("d", "-c", str(old))
        code, out, err = nnc(*args, input=old.read_bytes() if stdin else None)
        assert code == 0 and out == TEXT[:5000], err


def test_verify_and_bad_options(work):
    code, _, err = nnc("c", "-1", "--verify", "-T", "2", "--frame-size", "64K", "-f", "a.txt",
                       "v.nnc", cwd=work)
    assert code == 0, err
    assert nncompress.decompress((work / "v.nnc").read_bytes()) == TEXT
    for bad in (["--frame-size", "0"], ["--frame-size", "1.5M"], ["-T", "-1"]):
        code, _, err = nnc("c", "-1", *bad, "-f", "a.txt", "x.nnc", cwd=work)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (work / "x.nnc").exists()


# ---------------------------------------------------------------- Dask distributed

def _exit_worker(opts: dict, data: bytes, *args):
    os._exit(3)


def test_a_dead_local_worker_is_one_error():
    """A pool worker that dies (out of memory, killed) fails the run with one NNCError."""
    opts = {"level": 1, "model": None, "device": "cpu", "streams": None, "dynamic_eval": None}
    ex = parallel._Pool(2, opts, "c")
    try:
        with pytest.raises(nncompress.NNCError, match="worker process ended unexpectedly"):
            ex.submit(_exit_worker, opts, b"x").result()
    finally:
        ex.close(abort=True)


try:
    import distributed
except ImportError:            # the optional extra: pip install 'nncompress[cluster]'
    distributed = None


@pytest.fixture(scope="module")
def cluster():
    if distributed is None:
        pytest.skip("Dask distributed is not installed (pip install 'nncompress[cluster]')")
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as c:
        yield c.scheduler_address


def test_cluster_gives_the_same_bytes(work, cluster):
    code, out, err = nnc("c", "-1", "--frame-size", "48K", "--cluster", cluster, "-c", "a.txt",
                         cwd=work)
    assert code == 0, err
    assert out == (work / "one.nnc").read_bytes()
    code, back, err = nnc("d", "--cluster", cluster, "-c", "-", input=out)
    assert code == 0 and back == TEXT, err


def _die_once(marker: str, opts: dict, data: bytes):
    """A frame task whose first run kills its own worker process."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return parallel.compress_frame(opts, data, False)


def test_a_dead_worker_has_its_frame_run_again(cluster, tmp_path):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    opts = {"level": 1, "model": None, "device": "cpu", "streams": None, "dynamic_eval": None}
    data = TEXT[:20000]
    ex = parallel._Cluster(cluster, opts)
    try:
        body = ex.submit(_die_once, str(tmp_path / "died"), opts, data).result()[0]
    finally:
        ex.close()
    assert (tmp_path / "died").exists()
    assert body == nncompress.Compressor(level=1).compress(data)
