import io
import json
import tarfile

import pytest
import torch
from click.testing import CliRunner

from nncompress.predictors.fslstm import FORMAT, FSRNN, FSConfig, get_config
from nncompress.tools.train import load_model, read_data, train, train_cmd

TEXT = b"".join(b"%d little pigs went to market; the %d-th stayed home.\n" % (i % 7, i)
                for i in range(400))


@pytest.fixture(autouse=True)
def one_thread():
    # the machines are shared: 2 threads on a busy 2-core box are many times slower than 1
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_bytes(TEXT[:8000])
    (tmp_path / "d" / "sub" / "b.txt").write_bytes(TEXT[8000:14000])
    shard = tmp_path / "s.tar.xz"
    with tarfile.open(shard, "w:xz") as tf:
        for name, blob in (("x/1.txt", TEXT[14000:18000]), ("x/2.bin", bytes(range(256)) * 4)):
            ti = tarfile.TarInfo(name)
            ti.size = len(blob)
            tf.addfile(ti, io.BytesIO(blob))
    val = tmp_path / "val.txt"
    val.write_bytes(TEXT[18000:])
    return [tmp_path / "d", shard], [val]


def test_read_data(data):
    paths, _ = data
    raw, shards = read_data(paths)
    assert raw == TEXT[:18000] + bytes(range(256)) * 4    # sorted files, then tar members in order
    assert [s["bytes"] for s in shards] == [8000, 6000, 4000 + 1024]
    assert all(len(s["sha256"]) == 64 for s in shards)


def _tiny():
    return FSConfig(**{**get_config("tiny").to_dict(), "batch": 4, "bptt": 16})


def test_train_write_reload_resume(data, tmp_path):
    paths, val = data
    torch.manual_seed(123)   # train() must not depend on the caller's RNG
    out = tmp_path / "run" / "m.pt"
    kw = dict(seed=5, device="cpu", log_every=5, eval_every=10, val_bytes=512, val_streams=4,
              log=lambda s: None)
    rec = train(_tiny(), paths, val, out, 10, **kw)
    assert rec["steps"] == 10 and rec["bytes_seen"] == 10 * 4 * 16
    d = torch.load(out, weights_only=True)
    assert d["format"] == FORMAT and d["version"] == 1
    assert FSConfig.from_dict(d["config"]) == _tiny()
    m = load_model(out)
    assert isinstance(m, FSRNN) and not m.training
    j = json.loads(out.with_suffix(".json").read_text())
    assert j["steps"] == 10 and j["seed"] == 5 and len(j["data"]) == 3
    assert 0 < j["val_bpb"] < 9 and j["hardware"]["device"] == "cpu"
    ck = torch.load(out.with_suffix(".ckpt"), weights_only=True)
    assert ck["step"] == 10

    # resume to 20 == one uninterrupted run of 20 steps, bit for bit
    rec2 = train(None, paths, val, out, 20, resume=out.with_suffix(".ckpt"), **kw)
    assert rec2["steps"] == 20 and rec2["bytes_seen"] == 20 * 4 * 16
    assert [s for s, _ in rec2["val_curve"]] == [10, 20]
    assert rec2["val_bpb"] < rec["val_bpb"]
    out2 = tmp_path / "run2" / "m.pt"
    rec3 = train(_tiny(), paths, val, out2, 20, **kw)
    assert rec3["val_curve"] == rec2["val_curve"]
    a, b = torch.load(out, weights_only=True), torch.load(out2, weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_cli(data, tmp_path):
    paths, val = data
    out = tmp_path / "c.pt"
    r = CliRunner().invoke(train_cmd, [*map(str, paths), "--config", "tiny", "--steps", "3",
                                       "--val", str(val[0]), "--out", str(out), "--batch", "2",
                                       "--bptt", "8", "--device", "cpu", "--eval-every", "3",
                                       "--val-bytes", "256", "--anneal", "0.5"])
    assert r.exit_code == 0, r.output
    assert "val bpb" in r.output and out.exists() and out.with_suffix(".json").exists()
    j = json.loads(out.with_suffix(".json").read_text())
    assert j["config"]["batch"] == 2 and j["config_name"] == "tiny batch=2 bptt=8"
    r = CliRunner().invoke(train_cmd, [str(paths[0]), "--config", "nope", "--steps", "1",
                                       "--val", str(val[0]), "--out", str(out)])
    assert r.exit_code != 0 and "nope" in r.output


def test_load_model_refuses_a_file_that_is_not_a_model(tmp_path):
    from nncompress.errors import ModelError
    from nncompress.tools.train import load_model
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model\n")
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model(junk)


@pytest.mark.slow   # the slow tier (CI runs it after the fast one)
def test_export_with_dynamic_evaluation_statistics(data, tmp_path):
    """train -> export --de-data: the model file carries the statistics and the tuned settings,
    the record the static and dynamic cross-entropy, and the model compresses with --dynamic-eval."""
    import nncompress
    from nncompress.tools.export import export_cmd
    paths, val = data
    out = tmp_path / "m.pt"
    train(_tiny(), paths, val, out, 4, device="cpu", eval_every=4, val_bytes=256)
    de_text = tmp_path / "de.txt"
    de_text.write_bytes(TEXT[:6000])
    args = [str(out), "--name", "tiny-de", "--out-dir", str(tmp_path / "models"), "--val", str(val[0]),
            "--val-bytes", "2048", "--de-data", str(de_text)]
    r = CliRunner().invoke(export_cmd, args)
    assert r.exit_code == 0, r.output
    assert "dynamic evaluation" in r.output
    rec = json.loads((tmp_path / "models" / "tiny-de.json").read_text())
    assert rec["config"]["dyneval"]["stats"]["bytes"] == 6000
    settings = rec["config"]["dyneval"]["settings"]
    assert set(settings) == {"segment", "lr", "decay", "eps", "scope"}
    assert settings["scope"] == "full"            # new models recommend full dynamic evaluation
    v = rec["validation"]
    for key in ("dyneval", "dyneval_full"):       # output layer only, and full
        assert v[f"{key}_bpb"] > 0 and v[f"{key}_vs_static"] == pytest.approx(
            v[f"{key}_bpb"] / v["exact_bpb"] - 1)
    model = str(tmp_path / "models" / "tiny-de.pt")
    blob = nncompress.compress(TEXT[:3000], model=model, dynamic_eval=True, device="cpu")
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["dyneval"]["arith"] == "de-full-v1"
    assert nncompress.decompress(blob, model=model) == TEXT[:3000]
    blob = nncompress.compress(TEXT[:3000], model=model, dynamic_eval={"scope": "out"})
    assert nncompress.read_header(io.BytesIO(blob)).settings["dyneval"]["lr"] == 1e-3
    assert nncompress.decompress(blob, model=model) == TEXT[:3000]
    assert CliRunner().invoke(export_cmd, args).exit_code != 0   # a released name is never reused


class _Stop(Exception):
    pass


def test_stopped_at_a_timed_checkpoint_resumes_from_the_checkpoint_alone(data, tmp_path):
    """A run killed after a timed checkpoint (between evaluations) continues with only
    `train --resume CKPT` (data, validation, output and steps come from the checkpoint) and ends
    with the same weights and curve as an uninterrupted run."""
    paths, val = data
    kw = dict(seed=3, device="cpu", eval_every=4, val_bytes=512, val_streams=4, log_every=100)

    def stop_at_6(line):
        if line.startswith("checkpoint step 6"):
            raise _Stop

    out = tmp_path / "a" / "m.pt"
    ck = tmp_path / "a" / "fixed.ckpt"
    with pytest.raises(_Stop):
        train(_tiny(), paths, val, out, 10, ckpt_path=ck, checkpoint_minutes=0.0, log=stop_at_6,
              **kw)
    assert torch.load(ck, weights_only=True)["step"] == 6
    r = CliRunner().invoke(train_cmd, ["--resume", str(ck)])
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output and "done: 10 steps" in r.output

    ref = tmp_path / "b" / "m.pt"
    rec = train(_tiny(), paths, val, ref, 10, log=lambda s: None, **kw)
    resumed = json.loads(out.with_suffix(".json").read_text())
    assert resumed["val_curve"] == rec["val_curve"] and resumed["steps"] == 10
    assert resumed["hardware"]["precision"] == "bf16"
    a, b = torch.load(out, weights_only=True), torch.load(ref, weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_precision_fp32_differs_from_bf16_and_is_recorded(data, tmp_path):
    paths, val = data
    kw = dict(seed=1, device="cpu", eval_every=4, val_bytes=512, val_streams=4,
              log=lambda s: None)
    r32 = train(_tiny(), paths, val, tmp_path / "f.pt", 4, precision="fp32", **kw)
    r16 = train(_tiny(), paths, val, tmp_path / "b.pt", 4, precision="bf16", **kw)
    assert r32["hardware"]["precision"] == "fp32" and r16["hardware"]["precision"] == "bf16"
    a = torch.load(tmp_path / "f.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a)          # autocast really ran
    assert abs(r32["val_bpb"] - r16["val_bpb"]) < 0.05 * r32["val_bpb"]
    with pytest.raises(ValueError, match="precision"):
        train(_tiny(), paths, val, tmp_path / "x.pt", 1, precision="fp8", **kw)


def test_cli_new_run_needs_data_val_out_steps(tmp_path):
    r = CliRunner().invoke(train_cmd, ["--config", "tiny"])
    assert r.exit_code == 2 and "needed for a new run" in r.output
