"""The command-line tool: nncompress c|d|t|info (and bench, train).

Exit status: 0 success, 1 data error (corrupt, truncated, foreign or undecodable input, missing
or unreadable input, missing model, I/O failure, an output that is not a regular file, a broken
pipe), 2 usage error, 128 + the signal's number when ended by SIGINT (130), SIGHUP or SIGTERM.
Output is written to a temporary file beside the target and renamed only on success, so no partial
output is ever left behind. Every error is one line on stderr, with file names and header strings
escaped (no control characters reach the terminal).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

import click

from . import __version__, api, levels, parallel
from .format import container, frames, limits
from .errors import NNCError
from .predictors import spec as specs

SUFFIX = ".nnc"
STDIO = "-"


class _Fail(Exception):
    """A data error already phrased for the user (exit 1)."""


class _Signal(KeyboardInterrupt):
    """Raised by the SIGTERM and SIGHUP handlers, so that the temporary output is removed on the
    way out as for Ctrl-C (a KeyboardInterrupt: what lets Ctrl-C through lets it through too)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise _Signal(signum)


def _install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise _Signal where they are not ignored (nohup ignores SIGHUP, and
    then so does nncompress). SIGINT keeps Python's KeyboardInterrupt."""
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                signal.signal(sig, _on_signal)


def _esc(text) -> str:
    """`text` with every non-printable character escaped as repr() would (newlines, escape
    sequences, bidirectional controls); bytes a file name could not decode show as \\xNN."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # os.fsdecode's surrogateescape of a raw byte
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def _err(msg: str) -> None:
    """One line on stderr: "nncompress: " and the escaped message."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        click.echo(f"nncompress: {_esc(msg)}", err=True)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's last flush does
    not fail a second time and print a traceback."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)


class _Group(click.Group):
    """Short aliases (c, d, t) and lazily imported heavy commands (bench, train)."""

    aliases = {"c": "compress", "d": "decompress", "t": "test"}
    lazy = {"bench": ("nncompress.tools.bench", "bench_cmd"),
            "train": ("nncompress.tools.train", "train_cmd"),
            "export": ("nncompress.tools.export", "export_cmd")}

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with every error as one line on stderr (usage errors too)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        _install_signal_handlers()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            sys.exit(2)
        except click.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            _err(e.format_message().rstrip(".") + where)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            _err(e.format_message())
            sys.exit(e.exit_code)
        except click.Abort as e:
            if isinstance(e.__context__, _Signal):
                _err(f"terminated by {signal.Signals(e.__context__.signum).name}")
                sys.exit(128 + e.__context__.signum)
            _err("interrupted")
            sys.exit(130)
        except BrokenPipeError:
            _silence_stdout()
            _err("standard output: broken pipe")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

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
        click.echo(_esc(msg), err=True)


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


def _copy_to_fd(src: BinaryIO, out: BinaryIO) -> None:
    """Everything in `src` written to `out`'s file descriptor with os.write, looping over partial
    writes, so that a reader that goes away (EPIPE) always raises BrokenPipeError; a buffered
    write of a large chunk can return after a partial write without ever seeing the error."""
    out.flush()
    fd = out.fileno()
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]


def _fd_writer(out: BinaryIO):
    """A write function for standard output that hands each piece to the file descriptor at
    once (os.write, looping over partial writes: a reader that goes away raises
    BrokenPipeError), or to `out.write` where there is no descriptor."""
    try:
        out.flush()
        fd = out.fileno()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return out.write

    def write(b: bytes) -> None:
        view = memoryview(b)
        while view:
            view = view[os.write(fd, view):]
    return write


@contextlib.contextmanager
def _framed_output(target: Optional[Path], force: bool, mode: int) -> Iterator:
    """A write function for framed output: to standard output piece by piece (streaming, nothing
    spooled), or to a temporary file renamed to `target` only if the block finishes."""
    if target is None:
        try:
            yield _fd_writer(_stdout())
            _stdout().flush()
        except BrokenPipeError:
            _silence_stdout()
            raise _Fail("standard output: broken pipe") from None
        return
    with _atomic_output(target, force, mode) as tmp:
        yield tmp.write


def _open_nnc(fin: BinaryIO) -> tuple[bool, bytes, BinaryIO]:
    """(framed?, head, file to read): see frames.open_member."""
    return frames.open_member(fin)


@contextlib.contextmanager
def _atomic_output(target: Optional[Path], force: bool, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A seekable file to write; becomes `target` (or goes to stdout when target is None) only if
    the block finishes without an exception."""
    if target is None:
        out = _stdout()
        with tempfile.TemporaryFile() as tmp:
            yield tmp
            tmp.seek(0)
            try:
                _copy_to_fd(tmp, out)
            except BrokenPipeError:
                _silence_stdout()
                raise _Fail("standard output: broken pipe") from None
        return
    _check_target(target, force)
    parent = target.parent or Path(".")
    fd, name = tempfile.mkstemp(dir=parent, prefix=_temp_prefix(parent, target.name),
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


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _temp_prefix(directory: Path, name: str) -> str:
    """".NAME." for the temporary output beside NAME, with NAME shortened (by bytes, as the file
    system counts) so that the temporary name (8 random characters and ".tmp" follow) fits."""
    room = _name_max(directory) - 2 - 8 - len(".tmp")
    raw = os.fsencode(name)
    if len(raw) > room:
        raw = raw[:max(1, room)]
    return "." + os.fsdecode(raw) + "."


def _check_target(target: Path, force: bool) -> None:
    """An existing output must be a regular file (or a symbolic link, which is replaced, never
    followed), and is only replaced with -f; its name must fit the file system."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _Fail(f"{target}: {e.strerror or e}") from None
    if st is not None:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise _Fail(f"{target}: not a regular file; not overwritten")
        if not force:
            raise click.UsageError(f"{target} already exists; use -f to overwrite")
    parent = target.parent or Path(".")
    if len(os.fsencode(target.name)) > _name_max(parent):
        raise _Fail(f"{target}: file name too long")


def _stdout() -> BinaryIO:
    if sys.stdout is None:
        raise _Fail("standard output is closed")
    return sys.stdout.buffer


def _stdin() -> BinaryIO:
    if sys.stdin is None:
        raise _Fail("standard input is closed")
    return sys.stdin.buffer


def _check_input(path: str, force: bool = False) -> None:
    """A missing, unreadable or non-regular input is a data error (exit 1, one line), found before
    anything is built or written. A non-regular file (a device, a FIFO) is read only with -f."""
    if path == STDIO:
        return
    try:
        st = os.stat(path)
    except OSError as e:
        raise _Fail(f"{path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _Fail(f"{path}: is a directory")
    if not stat.S_ISREG(st.st_mode) and not force:
        raise _Fail(f"{path}: not a regular file; use -f to read it anyway")
    if not os.access(path, os.R_OK):
        raise _Fail(f"{path}: permission denied")


@contextlib.contextmanager
def _framed_input(path: str) -> Iterator[tuple[BinaryIO, Optional[int]]]:
    """The input to read frame by frame, and its length when it is a regular file (standard
    input and other non-regular files are read as they come, never spooled)."""
    if path == STDIO:
        yield _stdin(), None
        return
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        yield f, (st.st_size if stat.S_ISREG(st.st_mode) else None)


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
            _err(str(e))
            sys.exit(1)
        except _Signal as e:
            _err(f"terminated by {signal.Signals(e.signum).name}; no output written")
            sys.exit(128 + e.signum)
        except KeyboardInterrupt:
            _err("interrupted; no output written")
            sys.exit(130)
        except BrokenPipeError:
            _silence_stdout()
            _err("standard output: broken pipe")
            sys.exit(1)
        except OSError as e:  # outside _errors: still one line
            where = f"{e.filename}: " if e.filename else ""
            _err(f"{where}{e.strerror or e}")
            sys.exit(1)
    return wrapper


def _same_file(a: str, b: Optional[Path]) -> bool:
    if a == STDIO or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:   # b does not exist (or cannot, its name being too long)
        return False


model_opt = click.option("--model", "-m", metavar="SPEC", default=None,
                         help=f"Predictor: a built-in context model (ctx1, ctx2) or order0, a "
                              f"model name, a model file, or an ensemble A+B; a final +bmix adds "
                              f"the binary context-mixing stage that codes its own bits (the "
                              f"default's), +cm the byte-level context-mixing stage, +match "
                              f"only the long-range match model; bcm "
                              f"(level 1's binary context mixer) stands alone. Settings go in "
                              f"brackets, e.g. ctx2[hash_bits=17]+cm[nibbles=1]. A suffix "
                              f":static, :de, :de-out or :de-full sets the FS-LSTM's dynamic "
                              f"evaluation. "
                              f"Instead of a level (-6 is {specs.DEFAULT_SPEC}). When decoding, the "
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
threads_opt = click.option("-T", "--threads", "threads", type=click.IntRange(0, 4096), default=1,
                           show_default=True, metavar="N",
                           help="Code frames in N worker processes (0: one per core), each "
                           "loading the model once and holding one predictor (about the memory "
                           "of a one-process run per worker). Each process steps its streams on "
                           "the cores left to it (NNCOMPRESS_THREADS caps them). The output is "
                           "the same for any N and any thread count.")
cluster_opt = click.option("--cluster", metavar="ADDRESS", default=None,
                           help="Run the frames as tasks on a Dask distributed scheduler "
                           "(tcp://host:8786; needs nncompress[cluster] here and on every "
                           "worker). The output is the same as a local run.")


def _frame_size(ctx, param, value):
    if value is None:
        return None
    try:
        return parallel.parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


frame_size_opt = click.option("--frame-size", metavar="SIZE", default=None, callback=_frame_size,
                              help="Bytes per frame, with K, M or G (binary: 1M = 1 MiB); every "
                              "frame is coded on its own, so smaller frames let more workers "
                              "share an input and cost some ratio. Default: the level's.")


# ---------------------------------------------------------------- commands

def _level_options(f):
    """-1 .. -9, --fast (= -1) and --best (= -9); the last one given wins, as in gzip."""
    for n in range(levels.BEST, levels.FAST - 1, -1):
        f = click.option(f"-{n}", "level", flag_value=n, hidden=n not in (levels.FAST, levels.BEST),
                         help={levels.FAST: "Fastest level (--fast); -2 .. -8 lie between.",
                               levels.BEST: "Smallest output (--best)."}.get(n))(f)
    f = click.option("--fast", "level", flag_value=levels.FAST, hidden=True)(f)
    f = click.option("--best", "level", flag_value=levels.BEST, hidden=True)(f)
    return f


_LEVELS_EPILOG = ("\b\nLevels (default -%d; a file records the predictor and settings it\n"
                  "was made with, so it decodes whatever the level's preset is later):\n%s"
                  % (levels.DEFAULT_LEVEL, levels.help_text()))


@main.command("compress", epilog=_LEVELS_EPILOG)
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="[OUT]", required=False)
@stdout_opt
@force_opt
@click.option("--verify", is_flag=True, help="Decode what was written and compare it with the "
              "input before reporting success.")
@_level_options
@model_opt
@device_opt
@click.option("--ensemble", metavar="A,B,...", default=None,
              help="Mix several predictors, with weights learned online (same as --model A+B).")
@click.option("--streams", type=click.IntRange(1, limits.MAX_STREAMS), default=None,
              help="Number of streams coded in lockstep (default: from the input size).")
@click.option("--dynamic-eval/--no-dynamic-eval", "dyn", default=None,
              help="Keep training the FS-LSTM on the text as it is coded "
              "(the decoder repeats it). Default: the level's (on from -5); with --model, on "
              "when the model file carries the statistics it needs.")
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
@frame_size_opt
@threads_opt
@cluster_opt
@verbose_opt
@quiet_opt
@_exit_on_failure
def compress_cmd(src, dst, to_stdout, force, verify, level, model, device, ensemble, streams,
                 dyn, de_segment, de_lr, de_decay, de_scope, frame_size, threads, cluster,
                 verbose, quiet):
    """Compress IN into OUT (default IN.nnc; '-' is stdin/stdout). IN is kept."""
    if level is not None and (model is not None or ensemble is not None):
        raise click.UsageError("give a level (-1 .. -9) or --model/--ensemble, not both")
    overrides = {k: v for k, v in (("segment", de_segment), ("lr", de_lr), ("decay", de_decay),
                                   ("scope", de_scope)) if v is not None}
    if overrides and dyn is False:
        raise click.UsageError("--de-* options need --dynamic-eval")
    dynamic_eval = False if dyn is False else ((overrides or True) if (dyn or overrides) else None)
    if ensemble is not None:
        if model is not None:
            raise click.UsageError("give either --model or --ensemble")
        try:
            model = specs.ensemble(ensemble.split(","))
        except NNCError as e:
            raise click.UsageError(f"--ensemble: {e}") from None
    if to_stdout or (dst is None and src == STDIO) or dst == STDIO:
        target = None
        if _stdout().isatty() and not force:
            raise click.UsageError("refusing to write compressed data to a terminal (use -f)")
    else:
        target = Path(dst if dst is not None else src + SUFFIX)
    _check_input(src, force)
    if dst is None and src != STDIO and src.endswith(SUFFIX) and not force:
        raise click.UsageError(f"{src} already has the {SUFFIX} suffix; unchanged (use -f to "
                               "compress it again)")
    if _same_file(src, target):
        raise click.UsageError("input and output are the same file")
    if target is not None:
        _check_target(target, force)
    name = "stdin" if src == STDIO else src
    frame_size = frame_size or parallel.default_frame_size(level, model)
    with _errors(name), _framed_input(src) as (fin, n):
        # Build the predictor and check the stream count of the largest frame before any output
        # exists (workers build their own; this one codes the frames when there are none).
        comp = api.Compressor(level, model=model, device=device, streams=streams,
                              dynamic_eval=dynamic_eval)
        try:
            comp.stream_count(frame_size if n is None else min(n, frame_size))
        except ValueError as e:
            raise click.UsageError(f"--streams: {e}") from None
        with _framed_output(target, force, _default_mode(src)) as write, \
                _progress(n or 0, "compressing", quiet) as prog:
            stats = parallel.compress_stream(
                fin, write, level=level, model=model, device=device, streams=streams,
                dynamic_eval=dynamic_eval, frame_size=frame_size, workers=threads,
                cluster=cluster, verify=verify, n_bytes=n, progress=prog, compressor=comp)
        if verbose and not quiet:
            pl = lambda k, word: f"{k} {word}{'s' if k != 1 else ''}"
            msg = (f"{name}: {stats.original_bytes} -> {stats.compressed_bytes} bytes, "
                   f"{stats.bits_per_byte:.3f} bits/byte, "
                   f"{_kbps(stats.original_bytes, stats.seconds)}, "
                   f"{pl(stats.n_frames, 'frame')} of up to {frame_size} bytes, "
                   f"{pl(stats.workers, 'worker')}, {pl(stats.n_streams, 'stream')} in the first "
                   f"frame, {pl(stats.n_segments, 'segment')}")
            if verify:
                msg += ", verified"
            _say(quiet, msg)


@main.command("decompress")
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="[OUT]", required=False)
@stdout_opt
@force_opt
@model_opt
@device_opt
@threads_opt
@cluster_opt
@verbose_opt
@quiet_opt
@_exit_on_failure
def decompress_cmd(src, dst, to_stdout, force, model, device, threads, cluster, verbose, quiet):
    """Decompress IN into OUT (default IN without .nnc; '-' is stdin/stdout). IN is kept."""
    if to_stdout or (dst is None and src == STDIO) or dst == STDIO:
        target = None
    elif dst is not None:
        target = Path(dst)
    elif src.endswith(SUFFIX) and len(src) > len(SUFFIX):
        target = Path(src[: -len(SUFFIX)])
    else:
        raise click.UsageError(f"{src}: unknown suffix (expected {SUFFIX}); give OUT or use -c")
    _check_input(src, force)
    if _same_file(src, target):
        raise click.UsageError("input and output are the same file")
    if target is not None:
        _check_target(target, force)
    else:
        _stdout()
    name = "stdin" if src == STDIO else src
    with _errors(name):
        fin = _stdin() if src == STDIO else open(src, "rb")
        with fin:
            framed, head, fin = _open_nnc(fin)
            if framed:
                stats = _decode_framed(name, fin, head, target, force, _default_mode(src), model,
                                       device, threads, cluster, quiet)
                if verbose and not quiet:
                    _say(quiet, f"{name}: {stats.original_bytes} bytes, "
                                f"{_kbps(stats.original_bytes, stats.seconds)}, "
                                f"{stats.n_frames} frame{'s' if stats.n_frames != 1 else ''}, "
                                f"{stats.workers} worker{'s' if stats.workers != 1 else ''}")
                return
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


def _decode_framed(name, fin, head, target, force, mode, model, device, threads, cluster, quiet,
                   discard=False) -> parallel.FramedStats:
    """Decodes a version-5 input frame by frame into `target` (None: standard output; with
    `discard`, nowhere). A cut-off input: every complete frame is decoded and checked, written
    when the output is standard output, and the error says how much was recovered."""
    try:
        if discard:
            return parallel.decompress_stream(fin, lambda b: None, model=model, device=device,
                                              workers=threads, cluster=cluster, head=head)
        with _framed_output(target, force, mode) as write:
            return parallel.decompress_stream(fin, write, model=model, device=device,
                                              workers=threads, cluster=cluster, head=head)
    except parallel.PartialError as e:
        where = ("written to standard output" if target is None and not discard else
                 "nothing written" if not discard else "checked")
        raise _Fail(f"{name}: {e}, {where}") from None


@main.command("test")
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@model_opt
@device_opt
@threads_opt
@cluster_opt
@verbose_opt
@quiet_opt
def test_cmd(files, model, device, threads, cluster, verbose, quiet):
    """Decode each FILE fully and check every checksum, writing nothing."""
    failed = 0
    for path in files:
        name = "stdin" if path == STDIO else path
        try:
            _check_input(path)
            with _errors(name):
                fin = _stdin() if path == STDIO else open(path, "rb")
                with fin, tempfile.TemporaryFile() as sink:
                    framed, head, fin = _open_nnc(fin)
                    if framed:
                        fst = _decode_framed(name, fin, head, None, False, 0, model, device,
                                             threads, cluster, quiet, discard=True)
                        _say(quiet, f"{name}: OK" + (
                            f" ({fst.original_bytes} bytes, {fst.n_frames} frames, "
                            f"{_kbps(fst.original_bytes, fst.seconds)})" if verbose else ""))
                        continue
                    header = api.read_header(fin)
                    pred = api.predictor_for(header, model=model, device=device)
                    with _progress(header.original_length, "testing", quiet) as prog:
                        stats = api.decompress_stream(fin, sink, header=header, predictor=pred,
                                                      progress=prog)
            _say(quiet, f"{name}: OK" + (f" ({stats.original_bytes} bytes, "
                                         f"{_kbps(stats.original_bytes, stats.seconds)})"
                                         if verbose else ""))
        except _Fail as e:
            _err(str(e))
            failed += 1
        except _Signal as e:
            _err(f"terminated by {signal.Signals(e.signum).name}")
            sys.exit(128 + e.signum)
        except KeyboardInterrupt:
            _err("interrupted")
            sys.exit(130)
    sys.exit(1 if failed else 0)


@main.command("info")
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@_exit_on_failure
def info_cmd(files):
    """Show the header of each .nnc FILE: format, predictor, settings and sizes."""
    failed = 0
    for path in files:
        try:
            _check_input(path)
            with _errors(path), open(path, "rb") as f:
                framed, head, f = _open_nnc(f)
                fi = parallel.info(f, head) if framed else api.info(f)
        except _Fail as e:
            _err(str(e))
            failed += 1
            continue
        if framed:
            _info_framed(path, fi)
            continue
        h = fi.header
        click.echo("\n".join([
            f"{_esc(path)}:",
            f"  format version   {h.version}",
            *_predictor_lines(h),
            f"  streams          {h.n_streams}",
            f"  segments         {fi.n_segments} of up to {h.segment_steps} steps",
            f"  original size    {h.original_length}",
            f"  compressed size  {fi.compressed_bytes}",
            f"  bits per byte    {fi.bits_per_byte:.4f}"]))
    sys.exit(1 if failed else 0)


def _predictor_lines(h) -> list[str]:
    """`info`'s level, predictor, settings and coder lines of a header."""
    model = ("built-in, no model file" if h.model_sha256 == bytes(32)
             else f"model sha256 {h.model_sha256.hex()}")
    lv = levels.level_of(h)
    arith = str(h.settings.get("arith", ""))
    own = arith.split("-")[0] if arith.startswith(("bcm-", "bmix-")) else None  # its own coder
    coder = (f"{own}'s own binary arithmetic coder, 12-bit probabilities" if own else
             f"{container.CODER_NAMES[h.coder]}, {h.precision}-bit tables")
    return [f"  level            {f'-{lv}' if lv else 'none (a predictor chosen with --model)'}",
            f"  predictor        {_esc(h.predictor_name)} ({model})",
            f"  settings         {_esc(container.settings_bytes(h.settings).decode())}",
            f"  coder            {coder}"]


def _info_framed(path: str, fi: "parallel.FramedInfo") -> None:
    """`info` of a version-5 file: the frame layout, then the first frame's header."""
    lines = [f"{_esc(path)}:",
             f"  format version   {frames.VERSION} (frames of version-"
             f"{fi.first.header.version if fi.first else container.FORMAT_VERSION} bodies)"]
    if fi.members > 1:
        lines.append(f"  members          {fi.members} (concatenated files)")
    lines.append(f"  frames           {fi.n_frames} of up to "
                 f"{' / '.join(map(str, fi.frame_sizes))} bytes")
    if fi.first is not None:
        h = fi.first.header
        lines += [
            *_predictor_lines(h),
            f"  streams          {h.n_streams} in the first frame",
            f"  segments         {fi.n_segments} in all frames"]
    lines += [f"  original size    {fi.original_bytes}",
              f"  compressed size  {fi.compressed_bytes}",
              f"  bits per byte    {fi.bits_per_byte:.4f}"]
    click.echo("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    main()
