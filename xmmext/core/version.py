"""The package version (shown by --version and in report.html)."""
__version__ = "0.6.0"
