"""LocalServer: a small DICOMweb server that behaves like Google's Cloud Healthcare API."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from .faults import Fault, FaultQueue, Quota, RequestLog, RequestRecord, WindowQuota
from .handler import HTTPServer
from .operations import Operations, check_search_lag
from .qido import GOOGLE, SEARCH_KEYS
from .routes import BASE_PATH, route
from .storage import Store


class LocalServer:
    """Run the test server in a background thread.

    Example:
        with LocalServer(tmp_path) as srv, Client(srv.url) as client:
            client.search("studies")
    """

    base_path = BASE_PATH

    def __init__(
        self,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        token_endpoint: bool = True,
        delete_delay: float = 1.0,
        no_match_status: int = 204,  # Google's answer to a search without results
        verbose: bool = False,
        refuse_duplicates: bool = False,
        search_keys: str = GOOGLE,
        search_lag: float = 0.0,
    ) -> None:
        if no_match_status not in (200, 204):
            raise ValueError("no_match_status must be 200 or 204")
        if search_keys not in SEARCH_KEYS:
            raise ValueError(f"search_keys must be one of {', '.join(SEARCH_KEYS)}")
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_port = port
        self.token = token  # settable at runtime, read on every request
        # POST /token hands the token to any caller (google-auth tests need it); off,
        # the token really guards the store and /_control.
        self.token_endpoint = token_endpoint
        self.delete_delay = delete_delay
        self.no_match_status = no_match_status
        self.verbose = verbose
        # Like tiny-pacs: a STOW of an instance already held (same bytes) is refused
        # with 0x0111 instead of answered as stored. Every such upload is listed in
        # `duplicates` (SOP Instance UIDs), refused or not.
        self.refuse_duplicates = refuse_duplicates
        self.duplicates: list[str] = []
        # "google": only the search keys Google documents, at the levels it allows, with
        # its matching; "extended": more keys and PS3.4 wildcards (docs/testserver.md).
        self.search_keys = search_keys
        self.search_lag = search_lag
        self.faults = FaultQueue()
        # A request quota (429 above it), per second or per window; settable at runtime.
        self.quota: Quota | WindowQuota | None = None
        self.records = RequestLog()
        self.store: Store
        self.operations: Operations
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def search_lag(self) -> float:
        """Seconds a deleted instance still shows in searches (Google: "a few seconds");
        retrieve, metadata and the rest answer 404 at once. Settable at runtime: it
        applies to deletes from then on."""
        return self._search_lag

    @search_lag.setter
    def search_lag(self, seconds: float) -> None:
        self._search_lag = check_search_lag(seconds)

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> LocalServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self.store = Store(self.data_dir)
        self.operations = Operations(self.store, self.delete_delay, lambda: self.search_lag)
        try:
            self._httpd = HTTPServer((self.host, self._requested_port), self, route)
        except BaseException:
            self.store.close()
            raise
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"dcmweb-testserver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None or self._httpd is None:
            return
        self._httpd.stopping = True
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._thread = None
        self.operations.shutdown()
        self.store.close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses --------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        """http://host:port, with a wildcard bind address shown as loopback."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The DICOMweb base URL."""
        return self.root_url + BASE_PATH

    @property
    def beta_url(self) -> str:
        """The same DICOMweb base URL under Google's v1beta1 API."""
        return self.url.replace("/v1/", "/v1beta1/", 1)

    @property
    def token_url(self) -> str:
        return self.root_url + "/token"

    # --- faults and request log -------------------------------------------------
    def inject_fault(
        self,
        status: int | None = None,
        *,
        count: int = 1,
        retry_after: str | None = None,
        drop: bool = False,
        delay: float = 0.0,
        method: str | None = None,
        path_contains: str | None = None,
        after: bool = False,
        cut: bool = False,
        location: str | None = None,
        stall: float = 0.0,
        body_contains: str | None = None,
    ) -> None:
        """Apply a fault to the next `count` matching requests (after reading their body).

        `after=True`: handle the request, then drop the connection (a lost answer).
        `cut=True`: handle it, then send half of the answer's body and close.
        `stall=S`: likewise, but hold the connection S seconds before closing it.
        `body_contains`: only requests whose body holds this text (a file's UID).
        """
        self.faults.add(
            Fault(
                status=status,
                count=count,
                retry_after=retry_after,
                drop=drop,
                delay=delay,
                method=method,
                path_contains=path_contains,
                after=after,
                cut=cut,
                location=location,
                stall=stall,
                body_contains=body_contains,
            )
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first (the live list)."""
        return self.records.items

    def clear_requests(self) -> None:
        self.records.clear()
