"""nncompress: lossless text compression driven by a neural network and a range coder.

    blob = nncompress.compress(data, level=6)      # level 1 (fastest) .. 9; default 6
    data = nncompress.decompress(blob)
    with nncompress.open("x.nnc", "wb") as f: ...  # file objects; Compressor / Decompressor
"""
from .api import (Compressor, Decompressor, NNCFile, compress, compress_stream, cross_entropy,
                  decompress, decompress_stream, info, open, read_header)
from .errors import (ChecksumError, FormatError, ModelError, ModelMismatchError, NNCError,
                     TruncatedError)

__version__ = "0.1.0"
__all__ = [
    "compress", "decompress", "Compressor", "Decompressor", "open", "NNCFile",
    "compress_stream", "decompress_stream", "cross_entropy", "info", "read_header",
    "NNCError", "FormatError", "TruncatedError", "ChecksumError", "ModelError",
    "ModelMismatchError", "__version__",
]
