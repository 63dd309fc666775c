"""A local DICOMweb server that behaves like Google's Cloud Healthcare API, for tests.

Example:
    from dcmweb.testing import LocalServer
    with LocalServer(tmp_path) as srv:
        print(srv.url)
"""

from .server import LocalServer

__all__ = ["LocalServer"]
