"""mlkit: research methods on your own data, from one command line."""

__version__ = "0.1.0"
