"""Smoke tests of `nncompress bench` (the ratio report and the enwik8 tables), CI-sized (a few seconds)."""
from __future__ import annotations

import csv
import json
import random
import sys

import pytest
from click.testing import CliRunner

import nncompress
from nncompress.tools import bench
from nncompress.tools.bench import bench_cmd


def _sample_text(n: int = 4000) -> bytes:
    rng = random.Random(1234)
    words = ("the quick brown fox jumps over a lazy dog while seven compressors argue about "
             "entropy and bits per byte in the cold morning light").split()
    out = []
    while sum(len(w) + 1 for w in out) < n:
        out.append(rng.choice(words) + ("\n" if rng.random() < 0.08 else ""))
    return " ".join(out).encode()[:n]


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No shared corpora, no enwik8, no cache: the bench sees only what a test gives it."""
    monkeypatch.setenv("NNCOMPRESS_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setenv("NNCOMPRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NNCOMPRESS_ENWIK8", raising=False)
    return tmp_path


def test_ratio_report_on_a_small_file(isolated_env):
    tmp = isolated_env
    data = _sample_text()
    src = tmp / "sample.txt"
    src.write_bytes(data)
    out = tmp / "out"
    # no subcommand name: `bench PATHS...` is the ratio report
    res = CliRunner().invoke(bench_cmd, [str(src), "--model", "ctx1", "--out", str(out), "--min-time", "0"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("results.md", "results.csv", "machine.json"):
        assert (out / name).is_file(), name

    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    by = {r["compressor"]: r for r in rows}
    for name in ("nnc ctx1", "gzip -9", "bzip2 -9", "xz -9e"):
        assert name in by, (name, sorted(by))
    md = (out / "results.md").read_text(encoding="utf-8")
    for optional in ("zstd -19", "zstd --ultra -22", "brotli -q 11"):
        assert optional in by or f"{optional}: skipped (not installed" in md
    for r in rows:
        assert r["file"] == "sample.txt"
        assert int(r["bytes"]) == len(data)
        assert r["verified"] == "true"
        assert float(r["bpb"]) == pytest.approx(8 * int(r["compressed_bytes"]) / len(data), abs=1e-4)

    nnc = by["nnc ctx1"]
    assert nnc["model_file_bytes"] == "0"  # built-in model: no file
    ideal = float(nnc["ideal_bpb"])
    assert ideal == pytest.approx(nncompress.cross_entropy(data, model="ctx1"), abs=1e-3)
    assert 0 < ideal <= float(nnc["bpb"]) + 1e-9

    # the Markdown table: one row for the file, the totals and mean rows, one column per compressor
    assert f"| sample.txt | {len(data):,} |" in md
    assert "**total**" in md and "**mean**" in md
    header = next(line for line in md.splitlines() if line.startswith("| file | bytes |"))
    for name in by:
        assert f" {name} |" in header

    machine = json.loads((out / "machine.json").read_text())
    for key in ("cpu_model", "cpu_count", "ram_bytes", "os", "python", "versions", "device", "git", "date"):
        assert key in machine
    assert machine["versions"]["numpy"] and machine["versions"]["constriction"]
    assert machine["device"]["requested"] == "auto"

    try:
        import matplotlib  # noqa: F401
        assert (out / "chart.png").stat().st_size > 10_000
    except ImportError:
        assert "matplotlib is not installed" in res.output


def test_default_run_without_corpora_says_so(isolated_env):
    res = CliRunner().invoke(bench_cmd, ["--no-nnc", "--no-chart", "--out", str(isolated_env / "o")])
    assert res.exit_code == 0, res.output
    assert "not found" in res.output and "give PATHS" in res.output


def test_round_trip_mismatch_is_a_hard_failure(tmp_path):
    src = tmp_path / "x.txt"
    src.write_bytes(b"hello world " * 50)
    broken = bench.Compressor("broken", lambda d: d, lambda d: d[:-1], "test")
    with pytest.raises(bench.RoundTripError) as exc:
        bench.run_report(bench.plan_paths((str(src),)), [broken], None, echo=lambda s: None)
    assert exc.value.exit_code != 0
    assert [r.verified for r in exc.value.results] == [False]  # kept for the report


def test_budget_projection_separates_startup_from_per_byte_cost():
    done = [(4_000, 5.0), (12_000, 6.0), (25_000, 7.6)]      # ~4.5 s start-up + ~0.12 ms/byte
    assert bench._projected_s(done[:1], 10**6) is None
    assert 100 < bench._projected_s(done, 10**6) < 160


def test_missing_optional_codec_is_skipped_not_failed(monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)   # import raises ImportError
    monkeypatch.setitem(sys.modules, "brotli", None)
    cs = {c.name: c for c in bench.classic_compressors()}
    assert cs["zstd -19"].skipped.startswith("skipped (not installed")
    assert cs["brotli -q 11"].skipped.startswith("skipped (not installed")
    assert not cs["xz -9e"].skipped and cs["xz -9e"].version.startswith("liblzma")


def test_enwik8_tables_without_the_file(isolated_env):
    out = isolated_env / "e8"
    res = CliRunner().invoke(bench_cmd, ["enwik8", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    md = (out / "enwik8.md").read_text(encoding="utf-8")
    assert md.strip() in res.output
    lm, _, whole = md.partition("## (b)")
    assert "## (a) Language-model protocol" in lm and "Whole-file protocol" in whole
    assert "enwik8 not found" in md
    # our rows: not measured, in both tables
    assert "not measured" in lm and "not measured" in whole
    # published figures, each in its own protocol's table only
    anchors = bench.load_anchors()
    for r in anchors["enwik8_language_model"]["rows"]:
        assert f"| {r['model']} | {r['test_bpb']} |" in lm
    for fig in ("1.290", "1.277", "1.245", "1.198", "1.27 ", "1.24 ", "1.08 ", "1.225", "0.99 "):
        assert fig in lm
        assert f"| {fig.strip()} |" not in whole
    for r in anchors["enwik8_whole_file"]["rows"]:
        assert f"| {r['compressor']} | {r['bytes']:,} | {r['bpb']:.3f} |" in whole
        assert f"{r['bytes']:,}" not in lm
    assert "14,623,723" in whole and "2.916" in whole


def test_enwik8_rejects_a_file_that_is_not_enwik8(isolated_env):
    bad = isolated_env / "enwik8"
    bad.write_bytes(b"<mediawiki>" * 100)
    res = CliRunner().invoke(bench_cmd, ["enwik8", "--path", str(bad), "--out", str(isolated_env / "e8")])
    assert res.exit_code != 0
    assert "not enwik8" in res.output and "expected 100000000" in res.output


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_enwik8_download_failure_is_one_clear_line(isolated_env):
    # nothing listens on port 9 here: the download fails at once, as without network
    url = "http://127.0.0.1:9/enwik8.zip"
    res = CliRunner().invoke(bench_cmd, ["enwik8", "--download", "--url", url,
                                         "--out", str(isolated_env / "e8")])
    assert res.exit_code != 0
    err = _error_line(res.output)
    assert f"could not download {url}" in err and "--path FILE" in err
    assert not (isolated_env / "cache" / "enwik8").exists()


def test_enwik8_download_that_does_not_verify_leaves_nothing(isolated_env):
    import zipfile
    z = isolated_env / "enwik8.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("enwik8", b"<mediawiki>" * 100)
    res = CliRunner().invoke(bench_cmd, ["enwik8", "--download", "--url", z.as_uri(),
                                         "--out", str(isolated_env / "e8")])
    assert res.exit_code != 0
    err = _error_line(res.output)
    assert "is not enwik8" in err and "expected 100000000" in err
    assert list((isolated_env / "cache").iterdir()) == []      # no enwik8, no partial files


def test_default_set_comes_from_the_registry(tmp_path, monkeypatch):
    """Paths are located and verified by nncompress_corpora; absent, altered and oversized files are noted."""
    import shutil
    import nncompress_corpora as corpora
    try:
        real = corpora.locate("xargs.1")                         # the real shared corpora
    except corpora.CorpusError:
        pytest.skip("shared corpora not available")
    shared = tmp_path / "shared"
    monkeypatch.setenv("NNCOMPRESS_SHARED", str(shared))
    e = corpora.entries()
    good = shared / "corpora" / e["xargs.1"].relpath()
    good.parent.mkdir(parents=True)
    shutil.copyfile(real, good)
    bad = shared / "corpora" / e["paper1"].relpath()
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"x" * e["paper1"].bytes)                   # right size, wrong content

    plan = bench.plan_default(quick=False, max_bytes=1_000_000)
    assert plan.files == [("xargs.1", good)]
    notes = "\n".join(plan.notes)
    assert "paper1" in notes and "SHA-256 differs" in notes
    assert "alice29.txt" in notes and "not present" in notes
    assert "bible.txt (4,047,392 bytes): over --max-bytes" in notes
    # every registry text file is accounted for, in a file or a note
    for name in corpora.TEXT_FILES:
        assert name == "xargs.1" or name in notes

    quick = bench.plan_default(quick=True, max_bytes=1_000_000)
    assert quick.files == [("xargs.1", good)]
    assert "paper1" in "\n".join(quick.notes) and "book1" not in "\n".join(quick.notes)


def test_published_figures_are_package_data():
    """anchors.json ships inside the package (pyproject package-data), so any install has it."""
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "data/anchors.json" in cfg["tool"]["setuptools"]["package-data"]["nncompress"]
    assert (root / "nncompress" / "data" / "anchors.json").is_file()
    assert bench.load_anchors()["enwik8_whole_file"]["rows"]


def test_peer_compressors_round_trip_and_a_missing_one_is_skipped(tmp_path, monkeypatch):
    """paq8px's command line (a stand-in script that stores its input), and zpaq / 7-Zip where
    they are installed; each absent tool is listed as skipped with how to get it."""
    import shutil
    fake = tmp_path / "paq8px"
    fake.write_text('#!/bin/sh\necho "paq8px stand-in"\n[ $# -eq 0 ] && exit 0\n'
                    'if [ "$1" = "-d" ]; then tail -c +5 "$2" > "$3"; '
                    'else { printf PAQ8; cat "$2"; } > "$3"; fi\n')
    fake.chmod(0o755)
    data = b"peer compressors round trip\n" * 50
    got = {c.name: c for c in bench.external_compressors(str(fake))}
    assert set(got) == {"paq8px -8", "zpaq -m5", "7z PPMd -mx=9"}
    paq = got["paq8px -8"]
    assert paq.version == "paq8px stand-in" and paq.compress(data) == b"PAQ8" + data
    assert paq.decompress(b"PAQ8" + data) == data
    for name, tool in (("zpaq -m5", "zpaq"), ("7z PPMd -mx=9", "7zz")):
        c = got[name]
        if shutil.which(tool) or (tool == "7zz" and shutil.which("7z")):
            blob = c.compress(data)
            assert len(blob) < len(data) and c.decompress(blob) == data
        else:
            assert c.compress is None and "apt install" in c.skipped
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    none = {c.name: c for c in bench.external_compressors(None)}
    assert all(c.compress is None and c.skipped.startswith("skipped") for c in none.values())
