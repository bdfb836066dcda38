"""The version of gradgen (ground floor: the compiler records it in every emitted module)."""

__version__ = "0.1.0"
