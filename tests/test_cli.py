import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nncompress.format import container
from nncompress.cli import main

TEXT = b"It was the best of times, it was the worst of times, it was the age of wisdom.\n" * 300


def run_cli(*args, input=None):
    """The real program in a fresh process: exit status, stdout bytes, stderr text."""
    p = subprocess.run([sys.executable, "-m", "nncompress", *args], input=input,
                       capture_output=True, timeout=300)
    return p.returncode, p.stdout, p.stderr.decode()


@pytest.fixture
def textfile(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(TEXT)
    return p


def test_compress_decompress_default_names(textfile, tmp_path):
    r = CliRunner().invoke(main, ["c", "-m", "order0", str(textfile)])
    assert r.exit_code == 0, r.output
    nnc = tmp_path / "a.txt.nnc"
    assert nnc.is_file() and textfile.read_bytes() == TEXT  # the input is kept
    textfile.unlink()
    r = CliRunner().invoke(main, ["d", str(nnc)])
    assert r.exit_code == 0, r.output
    assert textfile.read_bytes() == TEXT
    assert nnc.is_file()


def test_long_command_names_and_explicit_output(textfile, tmp_path):
    out = tmp_path / "x.bin"
    assert CliRunner().invoke(main, ["compress", "-m", "order0", str(textfile), str(out)]).exit_code == 0
    back = tmp_path / "back.txt"
    assert CliRunner().invoke(main, ["decompress", str(out), str(back)]).exit_code == 0
    assert back.read_bytes() == TEXT


def test_existing_output_refused_without_force(textfile, tmp_path):
    nnc = tmp_path / "a.txt.nnc"
    nnc.write_bytes(b"keep me")
    r = CliRunner().invoke(main, ["c", "-m", "order0", str(textfile)])
    assert r.exit_code == 2 and "already exists" in r.output
    assert nnc.read_bytes() == b"keep me"
    r = CliRunner().invoke(main, ["c", "-f", "-m", "order0", str(textfile)])
    assert r.exit_code == 0
    assert nnc.read_bytes() != b"keep me"


def test_verbose_bits_per_byte_matches_file_size(textfile, tmp_path):
    r = CliRunner().invoke(main, ["c", "-v", "--verify", "-m", "order0", str(textfile)])
    assert r.exit_code == 0
    size = (tmp_path / "a.txt.nnc").stat().st_size
    line = r.output.strip().splitlines()[-1]
    assert f"{len(TEXT)} -> {size} bytes" in line and "verified" in line
    bpb = float(line.split(" bits/byte")[0].rsplit(" ", 1)[1])
    assert bpb == pytest.approx(8 * size / len(TEXT), abs=5e-4)


def test_info_and_test_commands(textfile, tmp_path):
    CliRunner().invoke(main, ["c", "-m", "order0", str(textfile)])
    nnc = str(tmp_path / "a.txt.nnc")
    r = CliRunner().invoke(main, ["info", nnc])
    assert r.exit_code == 0
    # the CLI writes framed files (format version 5) of version-4 bodies
    assert f"format version   5 (frames of version-{container.FORMAT_VERSION} bodies)" in r.output
    assert "order0" in r.output and "frames           1 of up to" in r.output
    assert f"original size    {len(TEXT)}" in r.output
    r = CliRunner().invoke(main, ["t", nnc])
    assert r.exit_code == 0 and "OK" in r.output
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "a.txt.nnc"]


def test_stdin_stdout_in_real_process(textfile):
    code, blob, err = run_cli("c", "-m", "order0", "-c", "-", input=TEXT)
    assert code == 0, err
    assert blob[:4] == b"\x89NNC"
    code, back, err = run_cli("d", "-c", "-", input=blob)
    assert code == 0, err
    assert back == TEXT


def test_usage_errors_exit_2(tmp_path, textfile):
    assert CliRunner().invoke(main, ["c"]).exit_code == 2
    assert CliRunner().invoke(main, ["d", str(textfile)]).exit_code == 2  # no .nnc suffix
    assert CliRunner().invoke(main, ["c", str(tmp_path / "missing")]).exit_code == 1  # as gzip
    assert CliRunner().invoke(main, ["c", "--device", "tpu", str(textfile)]).exit_code == 2


def test_unknown_model_is_one_line_exit_1(textfile, tmp_path):
    code, out, err = run_cli("c", "-m", "no-such-model", str(textfile))
    assert code == 1
    assert err.count("\n") == 1 and "unknown model" in err and "Traceback" not in err
    assert not (tmp_path / "a.txt.nnc").exists()


@pytest.mark.parametrize("payload", [b"", b"\x89NN", b"PK\x03\x04 not ours", TEXT])
def test_foreign_or_truncated_input_exit_1_no_output(tmp_path, payload):
    bad = tmp_path / "bad.nnc"
    bad.write_bytes(payload)
    code, out, err = run_cli("d", str(bad))
    assert code == 1, err
    assert err.startswith("nncompress: ") and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["bad.nnc"]


def test_ensemble_option(textfile, tmp_path):
    r = CliRunner().invoke(main, ["c", "--ensemble", "ctx1,order0", str(textfile)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "a.txt.nnc")])
    assert "predictor        gmix" in r.output and '"name":"order0"' in r.output
    assert CliRunner().invoke(main, ["c", "-f", "--ensemble", "ctx1", str(textfile)]).exit_code == 2
    r = CliRunner().invoke(main, ["c", "-f", "--ensemble", "ctx1,order0", "-m", "ctx1", str(textfile)])
    assert r.exit_code == 2


def test_ctrl_c_leaves_no_partial_output(tmp_path):
    import signal
    import time
    big = tmp_path / "big.txt"
    big.write_bytes(TEXT * 400)  # about 32 MB of work for order0: seconds
    # A runner started in the background (no job control) ignores SIGINT, and the child would
    # inherit that: give the child the default disposition, as a terminal's Ctrl-C would find it.
    p = subprocess.Popen([sys.executable, "-m", "nncompress", "c", "-m", "order0", str(big)],
                         stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.name.endswith(".tmp") for f in tmp_path.iterdir()):
        time.sleep(0.05)  # wait until the temporary output exists
    assert any(f.name.endswith(".tmp") for f in tmp_path.iterdir()), "no temporary output seen"
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1].decode()
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["big.txt"]


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_default_model_through_the_cli(textfile, tmp_path):
    """The shipped default (fslstm-medium-i8-v1+bmix): compress with --verify, info, test,
    restore."""
    code, _, err = run_cli("c", "-v", "--verify", str(textfile))
    assert code == 0, err
    nnc = tmp_path / "a.txt.nnc"
    r = CliRunner().invoke(main, ["info", str(nnc)])
    assert "predictor        bmix" in r.output and "fslstm-medium-i8-v1" in r.output
    assert "exact-i8-v1" in r.output and '"arith":"bmix-v2"' in r.output
    assert "bmix's own binary arithmetic coder" in r.output
    assert "dyneval" not in r.output and "level            -6" in r.output
    out = tmp_path / "back.txt"
    assert run_cli("d", str(nnc), str(out))[0] == 0
    assert out.read_bytes() == TEXT
