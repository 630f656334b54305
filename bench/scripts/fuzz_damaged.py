"""Damage .nnc files at random and check that each one fails loudly.

    python bench/scripts/fuzz_damaged.py N_API N_CLI [MODEL]

N_API mutations through the Python API (each must raise NNCError), N_CLI through the real CLI
(each must exit 1 with one line on stderr, no traceback, and leave no output file).
"""
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import nncompress
from nncompress.errors import NNCError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import mutate  # noqa: E402  (the test suite's damage model, one copy)

TEXT = Path(__file__).resolve().parents[2].joinpath("README.md").read_bytes()[:6000]


def main():
    n_api, n_cli = int(sys.argv[1]), int(sys.argv[2])
    model = sys.argv[3] if len(sys.argv) > 3 else None
    blob = nncompress.compress(TEXT, model=model, streams=3, segment_steps=700)
    rng = random.Random(12345)
    bad = 0
    for _ in range(n_api):
        kind, _, m = mutate(blob, rng)
        try:
            nncompress.decompress(m)
            bad += 1
            print("DECODED WITHOUT ERROR:", kind)
        except NNCError:
            pass
    cli_bad = 0
    with tempfile.TemporaryDirectory() as d:
        for k in range(n_cli):
            kind, _, m = mutate(blob, rng)
            sub = Path(d) / str(k)
            sub.mkdir()
            (sub / "x.nnc").write_bytes(m)
            p = subprocess.run(["nncompress", "d", str(sub / "x.nnc")], capture_output=True, text=True)
            ok = (p.returncode == 1 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
                  and os.listdir(sub) == ["x.nnc"])
            if not ok:
                cli_bad += 1
                print("CLI FAILURE:", kind, p.returncode, p.stderr[-300:])
    print(f"model {model or 'default'}: {n_api} API mutations, {bad} decoded silently; "
          f"{n_cli} CLI mutations, {cli_bad} not exit-1/one-line/no-output")


if __name__ == "__main__":
    main()
