"""Test support: launchers for real DICOMweb servers (Orthanc, tiny-pacs) and DICOM corpora.

Used by tests/conftest.py; importable as `support` from tests (pytest puts tests/ on
sys.path because tests/ is not a package).
"""
