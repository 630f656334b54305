"""The command-line tool: nncompress c|d|t|info (and bench, train).

Exit status: 0 success, 1 data error (corrupt, truncated, foreign or undecodable input, missing
model, I/O failure), 2 usage error, 130 interrupted. Output is written to a temporary file beside
the target and renamed only on success, so no partial output is ever left behind.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

import click

from . import __version__, api, container, models
from .errors import NNCError

SUFFIX = ".nnc"
STDIO = "-"


class _Fail(Exception):
    """A data error already phrased for the user (exit 1)."""


class _Group(click.Group):
    """Short aliases (c, d, t) and lazily imported heavy commands (bench, train)."""

    aliases = {"c": "compress", "d": "decompress", "t": "test"}
    lazy = {"bench": ("nncompress.tools.bench", "bench_cmd"),
            "train": ("nncompress.tools.train", "train_cmd"),
            "export": ("nncompress.tools.export", "export_cmd")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        name = self.aliases.get(name, name)
        if name in self.lazy:
            mod, attr = self.lazy[name]
            try:
                return getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as e:
                raise click.ClickException(f"the {name!r} command is unavailable: {e}")
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = []
        short = {v: k for k, v in self.aliases.items()}
        for name in self.list_commands(ctx):
            label = f"{name}, {short[name]}" if name in short else name
            if name in self.lazy:
                help_ = {"bench": "Measure ratios and speeds against classic compressors.",
                         "train": "Train an FS-LSTM model.",
                         "export": "Turn a trained checkpoint into a shipped integer model."}[name]
            else:
                help_ = super().get_command(ctx, name).get_short_help_str(60)
            rows.append((label, help_))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="nncompress")
def main():
    """Lossless compression with a neural predictor and a range coder.

    \b
      nncompress c FILE            compress FILE to FILE.nnc
      nncompress d FILE.nnc        restore FILE
      nncompress t FILE.nnc...     decode fully and check, writing nothing
      nncompress info FILE.nnc...  show what a file was made with
    """


# ---------------------------------------------------------------- helpers

def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        click.echo(msg, err=True)


def _kbps(n: int, seconds: float) -> str:
    return f"{n / 1000 / seconds:.1f} KB/s" if seconds > 0 else "- KB/s"


@contextlib.contextmanager
def _progress(total: int, label: str, quiet: bool) -> Iterator[Optional[callable]]:
    """A progress bar on stderr for long runs, only when stderr is a terminal."""
    if quiet or total < (1 << 16) or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True,
                           show_percent=True, width=30) as bar:
        yield bar.update


def _default_mode(src: str) -> int:
    """Permission bits for a new output: those of the input file (as gzip does), else the umask's."""
    if src != STDIO:
        with contextlib.suppress(OSError):
            return os.stat(src).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def _atomic_output(target: Optional[Path], force: bool, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A seekable file to write; becomes `target` (or goes to stdout when target is None) only if
    the block finishes without an exception."""
    if target is None:
        with tempfile.TemporaryFile() as tmp:
            yield tmp
            tmp.seek(0)
            out = sys.stdout.buffer
            shutil.copyfileobj(tmp, out, 1 << 20)
            out.flush()
        return
    if target.exists() and not force:
        raise click.UsageError(f"{target} already exists; use -f to overwrite")
    fd, name = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.",
                                suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as tmp:
            yield tmp
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


@contextlib.contextmanager
def _seekable_input(path: str) -> Iterator[BinaryIO]:
    """The input as a seekable binary file; stdin is spooled to a temporary file first."""
    if path == STDIO:
        with tempfile.TemporaryFile() as tmp:
            shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
            tmp.seek(0)
            yield tmp
    else:
        with open(path, "rb") as f:
            yield f


@contextlib.contextmanager
def _errors(name: str) -> Iterator[None]:
    """Turns data and I/O errors into one line on stderr and exit status 1."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except NNCError as e:
        raise _Fail(f"{name}: {e}") from None
    except OSError as e:
        raise _Fail(f"{name}: {e.strerror or e}") from None


def _exit_on_failure(func):
    """Runs a command body, mapping _Fail to exit 1 and Ctrl-C to exit 130."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _Fail as e:
            click.echo(f"nncompress: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("nncompress: interrupted; no output written", err=True)
            sys.exit(130)
    return wrapper


def _same_file(a: str, b: Optional[Path]) -> bool:
    if a == STDIO or b is None or not b.exists():
        return False
    return os.path.samefile(a, b)


def _files_equal(a: BinaryIO, b: BinaryIO) -> bool:
    a.seek(0)
    b.seek(0)
    while True:
        x, y = a.read(1 << 20), b.read(1 << 20)
        if x != y:
            return False
        if not x:
            return True


model_opt = click.option("--model", "-m", metavar="NAME|PATH", default=None,
                         help=f"Predictor: a built-in name, a model in models/, a model file, or "
                              f"an ensemble A+B; a final +cm adds context mixing over the bits "
                              f"(context models, match model, APM), a final +match only the "
                              f"long-range match model. "
                              f"Default: {models.DEFAULT_MODEL}. When decoding, the "
                              "file's own model is used; --model only says where to find its file.")
device_opt = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                          show_default=True, help="Where the neural predictor runs. The output "
                          "is the same on every device.")
verbose_opt = click.option("-v", "--verbose", is_flag=True,
                           help="Report sizes, bits per byte, speed and stream count.")
quiet_opt = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
force_opt = click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
stdout_opt = click.option("-c", "--stdout", "to_stdout", is_flag=True,
                          help="Write to standard output.")


# ---------------------------------------------------------------- commands

@main.command("compress")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False, allow_dash=True, exists=True))
@click.argument("dst", metavar="[OUT]", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@stdout_opt
@force_opt
@click.option("--verify", is_flag=True, help="Decode what was written and compare it with the "
              "input before reporting success.")
@model_opt
@device_opt
@click.option("--ensemble", metavar="A,B,...", default=None,
              help="Mix several predictors, with weights learned online (same as --model A+B).")
@click.option("--streams", type=click.IntRange(1, 1 << 20), default=None,
              help="Number of streams coded in lockstep (default: from the input size).")
@click.option("--dynamic-eval/--no-dynamic-eval", "dyn", default=None,
              help="Keep training the FS-LSTM on the text as it is coded "
              "(the decoder repeats it). Default: on when the model file carries the statistics "
              "it needs (the shipped default does).")
@click.option("--de-segment", type=click.IntRange(1, 1 << 16), default=None, metavar="STEPS",
              help="Dynamic evaluation: steps between weight updates (default: the model's).")
@click.option("--de-lr", type=click.FloatRange(0, 1), default=None, metavar="LR",
              help="Dynamic evaluation: learning rate (default: the model's).")
@click.option("--de-decay", type=click.FloatRange(0, 1), default=None, metavar="LAMBDA",
              help="Dynamic evaluation: decay toward the trained weights (default: the model's).")
@click.option("--de-scope", type=click.Choice(["out", "full"]), default=None,
              help="Dynamic evaluation: adapt the output layer only (out, faster) or every weight "
              "matrix through backpropagation over each segment (full, about 2.5x slower on a "
              "CPU). Default: the model's.")
@verbose_opt
@quiet_opt
@_exit_on_failure
def compress_cmd(src, dst, to_stdout, force, verify, model, device, ensemble, streams, dyn,
                 de_segment, de_lr, de_decay, de_scope, verbose, quiet):
    """Compress IN into OUT (default IN.nnc; '-' is stdin/stdout). IN is kept."""
    overrides = {k: v for k, v in (("segment", de_segment), ("lr", de_lr), ("decay", de_decay),
                                   ("scope", de_scope)) if v is not None}
    if overrides and dyn is False:
        raise click.UsageError("--de-* options need --dynamic-eval")
    dynamic_eval = False if dyn is False else ((overrides or True) if (dyn or overrides) else None)
    if ensemble is not None:
        if model is not None:
            raise click.UsageError("give either --model or --ensemble")
        parts = [p.strip() for p in ensemble.split(",") if p.strip()]
        if len(parts) < 2:
            raise click.UsageError("--ensemble needs at least two models, comma-separated")
        model = "+".join(parts)
    if to_stdout or (dst is None and src == STDIO) or dst == STDIO:
        target = None
        if sys.stdout.isatty() and not force:
            raise click.UsageError("refusing to write compressed data to a terminal (use -f)")
    else:
        target = Path(dst if dst is not None else src + SUFFIX)
    if _same_file(src, target):
        raise click.UsageError("input and output are the same file")
    name = "stdin" if src == STDIO else src
    with _errors(name), _seekable_input(src) as fin:
        n = os.fstat(fin.fileno()).st_size
        with _atomic_output(target, force, _default_mode(src)) as fout, _progress(n, "compressing", quiet) as prog:
            stats = api.compress_stream(fin, fout, model=model, device=device, streams=streams,
                                        progress=prog, dynamic_eval=dynamic_eval)
            if verify:
                fout.seek(0)
                with tempfile.TemporaryFile() as check:
                    t0 = time.perf_counter()
                    api.decompress_stream(fout, check, model=model, device=device)
                    if not _files_equal(fin, check):
                        raise _Fail(f"{name}: verification failed: the decoded data differs from "
                                    "the input; nothing written")
                    vsec = time.perf_counter() - t0
        if verbose and not quiet:
            msg = (f"{name}: {stats.original_bytes} -> {stats.compressed_bytes} bytes, "
                   f"{stats.bits_per_byte:.3f} bits/byte, {_kbps(n, stats.seconds)}, "
                   f"{stats.n_streams} stream{'s' if stats.n_streams != 1 else ''}, "
                   f"{stats.n_segments} segment{'s' if stats.n_segments != 1 else ''}")
            if verify:
                msg += f", verified ({_kbps(n, vsec)})"
            _say(quiet, msg)


@main.command("decompress")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False, allow_dash=True, exists=True))
@click.argument("dst", metavar="[OUT]", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@stdout_opt
@force_opt
@model_opt
@device_opt
@verbose_opt
@quiet_opt
@_exit_on_failure
def decompress_cmd(src, dst, to_stdout, force, model, device, verbose, quiet):
    """Decompress IN into OUT (default IN without .nnc; '-' is stdin/stdout). IN is kept."""
    if to_stdout or (dst is None and src == STDIO) or dst == STDIO:
        target = None
    elif dst is not None:
        target = Path(dst)
    elif src.endswith(SUFFIX) and len(src) > len(SUFFIX):
        target = Path(src[: -len(SUFFIX)])
    else:
        raise click.UsageError(f"{src}: unknown suffix (expected {SUFFIX}); give OUT or use -c")
    if _same_file(src, target):
        raise click.UsageError("input and output are the same file")
    name = "stdin" if src == STDIO else src
    with _errors(name):
        fin = sys.stdin.buffer if src == STDIO else open(src, "rb")
        with fin:
            header = api.read_header(fin)
            # Find the model before creating any output: a file that cannot be decoded is refused
            # with nothing written.
            pred = api.predictor_for(header, model=model, device=device)
            with _atomic_output(target, force, _default_mode(src)) as fout, \
                    _progress(header.original_length, "decompressing", quiet) as prog:
                stats = api.decompress_stream(fin, fout, header=header, predictor=pred,
                                              progress=prog)
        if verbose and not quiet:
            size = os.path.getsize(src) if src != STDIO else None
            _say(quiet, f"{name}: {size if size is not None else '?'} -> {stats.original_bytes} "
                        f"bytes, {_kbps(stats.original_bytes, stats.seconds)}, "
                        f"{stats.n_streams} stream{'s' if stats.n_streams != 1 else ''}")


@main.command("test")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, allow_dash=True, exists=True))
@model_opt
@device_opt
@verbose_opt
@quiet_opt
def test_cmd(files, model, device, verbose, quiet):
    """Decode each FILE fully and check every checksum, writing nothing."""
    failed = 0
    for path in files:
        name = "stdin" if path == STDIO else path
        try:
            with _errors(name):
                fin = sys.stdin.buffer if path == STDIO else open(path, "rb")
                with fin, tempfile.TemporaryFile() as sink:
                    header = api.read_header(fin)
                    pred = api.predictor_for(header, model=model, device=device)
                    with _progress(header.original_length, "testing", quiet) as prog:
                        stats = api.decompress_stream(fin, sink, header=header, predictor=pred,
                                                      progress=prog)
            _say(quiet, f"{name}: OK" + (f" ({stats.original_bytes} bytes, "
                                         f"{_kbps(stats.original_bytes, stats.seconds)})"
                                         if verbose else ""))
        except _Fail as e:
            click.echo(f"nncompress: {e}", err=True)
            failed += 1
        except KeyboardInterrupt:
            click.echo("nncompress: interrupted", err=True)
            sys.exit(130)
    sys.exit(1 if failed else 0)


@main.command("info")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, exists=True))
def info_cmd(files):
    """Show the header of each .nnc FILE: format, predictor, settings and sizes."""
    failed = 0
    for path in files:
        try:
            with _errors(path), open(path, "rb") as f:
                fi = api.info(f)
        except _Fail as e:
            click.echo(f"nncompress: {e}", err=True)
            failed += 1
            continue
        h = fi.header
        model = ("built-in, no model file" if h.model_sha256 == bytes(32)
                 else f"model sha256 {h.model_sha256.hex()}")
        click.echo(
            f"{path}:\n"
            f"  format version   {h.version}\n"
            f"  predictor        {h.predictor_name} ({model})\n"
            f"  settings         {container.settings_bytes(h.settings).decode()}\n"
            f"  coder            {container.CODER_NAMES[h.coder]}, {h.precision}-bit tables\n"
            f"  streams          {h.n_streams}\n"
            f"  segments         {fi.n_segments} of up to {h.segment_steps} steps\n"
            f"  original size    {h.original_length}\n"
            f"  compressed size  {fi.compressed_bytes}\n"
            f"  bits per byte    {fi.bits_per_byte:.4f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
