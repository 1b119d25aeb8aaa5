"""The package version (shown by --version and in report.html)."""
__version__ = "0.5.0"
