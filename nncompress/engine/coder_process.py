"""Range coding in a second process, so that the encoder's predictor and its coder use two cores.

The encoder knows every symbol in advance, so it can hand batches of (symbols, weights) to a
worker that quantises them (coding.quantize) and range-codes them while the main process computes
the next predictions. The worker runs exactly the code the main process would run, so the
compressed bytes are the same with and without it (tests/test_engine.py checks this). Decoding
cannot do this: each step needs the symbols just decoded.

Weights travel through a few slots of a memory-mapped temporary file (a pipe would copy 2 KB per
byte coded); the child's stdin/stdout carry only small pickled messages:
    ("begin",)                    a new segment encoder
    ("code", slot, rows, symbols) quantise and code rows of a slot; the worker answers ("ack",)
    ("end",)                      the worker answers ("ok", words, ideal bits) or ("error", text)
    ("quit",)
A slot is reused only after its ack, so memory stays bounded. The worker imports only numpy,
constriction and nncompress.format.coding, and ignores Ctrl-C (the main process cleans up).
"""
from __future__ import annotations

import mmap
import pickle
import subprocess
import sys
import tempfile

import numpy as np

from ..format import coding

SLOT_ROWS = 2048
N_SLOTS = 3


def _slots(fd: int, slot_rows: int, n_slots: int):
    size = n_slots * slot_rows * coding.ALPHABET * 8
    m = mmap.mmap(fd, size)
    return m, np.ndarray((n_slots, slot_rows, coding.ALPHABET), dtype=np.int64, buffer=m)


def _main(fd: int, slot_rows: int, n_slots: int) -> None:  # pragma: no cover - the child
    inp, out = sys.stdin.buffer, sys.stdout.buffer

    def send(msg):
        pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    m, buf = _slots(fd, slot_rows, n_slots)
    enc, bits, failed = None, 0.0, None
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:  # the main process went away
            return
        kind = msg[0]
        if kind == "quit":
            return
        try:
            if kind == "begin":
                enc, bits, failed = coding.SegmentEncoder(), 0.0, None
            elif kind == "code":
                _, slot, rows, sym = msg
                if failed is None:
                    freq = coding.quantize(buf[slot, :rows])
                    enc.encode(sym, freq)
                    bits += coding.code_length_bits(freq, sym)
                send(("ack",))
            elif kind == "end":
                if failed is not None:
                    send(("error", failed))
                else:
                    send(("ok", enc.finish().astype("<u4").tobytes(), bits))
        except Exception as e:  # reported at the segment's end, in the main process
            failed = f"{type(e).__name__}: {e}"
            if kind == "code":
                send(("ack",))


class CoderProcess:
    """A worker process that quantises and range-codes the segments of one encoder.

    Its failures are OSErrors (the CLI reports them in one line). It is a plain
    `python -m nncompress.engine.coder_process` child (not multiprocessing, which would
    re-import the caller's main module), in its own session so that Ctrl-C reaches only the main
    process, which then closes it. The slots are an anonymous temporary file mapped by both."""

    def __init__(self, slot_rows: int = SLOT_ROWS, n_slots: int = N_SLOTS) -> None:
        self.rows, self.n_slots = slot_rows, n_slots
        self._file = tempfile.TemporaryFile()
        self._file.truncate(n_slots * slot_rows * coding.ALPHABET * 8)
        self._mmap, self._buf = _slots(self._file.fileno(), slot_rows, n_slots)
        fd = self._file.fileno()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "nncompress.engine.coder_process", str(fd), str(slot_rows), str(n_slots)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,), start_new_session=True)
        self._slot, self._fill, self._sym = 0, 0, []
        self._outstanding = 0

    # -- the encoder side's interface

    def begin(self) -> None:
        self._send_msg(("begin",))

    def code(self, symbols: np.ndarray, weights: np.ndarray) -> None:
        """Queues one step's rows (copied at once: the predictor may reuse its arrays)."""
        for lo in range(0, len(symbols), self.rows):
            sym, w = symbols[lo: lo + self.rows], weights[lo: lo + self.rows]
            if self._fill + len(sym) > self.rows:
                self._flush()
            self._buf[self._slot, self._fill: self._fill + len(sym)] = w
            self._sym.append(sym)
            self._fill += len(sym)

    def end(self) -> tuple[bytes, float]:
        """Finishes the segment: (compressed words as little-endian bytes, ideal bits)."""
        self._flush()
        self._send_msg(("end",))
        while True:
            reply = self._recv()
            if reply[0] == "ack":
                self._outstanding -= 1
                continue
            if reply[0] != "ok":
                raise OSError(f"the coder process failed: {reply[1]}")
            return reply[1], reply[2]

    def close(self) -> None:
        try:
            self._send_msg(("quit",))
            self._proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
        del self._buf
        self._mmap.close()
        self._file.close()

    # -- internals

    def _send_msg(self, msg) -> None:
        try:
            pickle.dump(msg, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise OSError("the coder process ended unexpectedly") from None

    def _recv(self):
        try:
            return pickle.load(self._proc.stdout)
        except EOFError:
            raise OSError("the coder process ended unexpectedly") from None

    def _flush(self) -> None:
        if not self._fill:
            return
        sym = np.concatenate(self._sym).astype(np.int64, copy=False)
        self._send_msg(("code", self._slot, self._fill, sym))
        self._outstanding += 1
        self._slot = (self._slot + 1) % self.n_slots
        self._fill, self._sym = 0, []
        while self._outstanding >= self.n_slots:  # the next slot is free once its ack is in
            if self._recv()[0] == "ack":
                self._outstanding -= 1


if __name__ == "__main__":  # pragma: no cover
    _main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
