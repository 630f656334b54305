"""Exception hierarchy. Every error nncompress raises on purpose derives from NNCError."""


class NNCError(Exception):
    """Base of all nncompress errors."""


class FormatError(NNCError):
    """Not a .nnc file, an unknown format version, or a damaged header or segment record."""


class TruncatedError(FormatError, EOFError):
    """The .nnc data ends before the format says it should."""


class ChecksumError(NNCError):
    """Decoded data or stored words do not match their recorded checksum."""


class ModelError(NNCError):
    """A model file is missing, unreadable, malformed or fails its hash check."""


class ModelMismatchError(ModelError):
    """The .nnc file was made with a model that is not available (or differs) here."""
