"""gilviz: see what every Python thread is doing, on which core, and who holds the GIL."""

__version__ = "0.1.0"
