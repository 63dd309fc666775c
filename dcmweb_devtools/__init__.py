"""Development support shared by tests/ and benchmarks/: launchers for real DICOMweb
servers (Orthanc, tiny-pacs), process helpers and DICOM corpora.

It sits beside dcmweb/ in the source tree (and the sdist), not in the wheel: users of
dcmweb never import it. pytest finds it through ``pythonpath = ["."]`` in pyproject.toml;
``python -m benchmarks`` runs from the repository root, which is on sys.path.
"""
