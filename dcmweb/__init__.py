"""dcmweb: a command-line client and Python library for DICOMweb servers."""

__version__ = "0.1.0"
