"""nncompress: lossless text compression driven by a neural network and a range coder."""
from .api import (compress, compress_stream, cross_entropy, decompress, decompress_stream, info,
                  read_header)
from .errors import (ChecksumError, FormatError, ModelError, ModelMismatchError, NNCError,
                     TruncatedError)

__version__ = "0.1.0"
__all__ = [
    "compress", "decompress", "compress_stream", "decompress_stream", "cross_entropy", "info",
    "read_header", "NNCError", "FormatError", "TruncatedError", "ChecksumError", "ModelError",
    "ModelMismatchError", "__version__",
]
