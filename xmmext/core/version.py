"""The package version (shown by --version and in report.html)."""
__version__ = "0.7.0"
