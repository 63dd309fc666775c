"""dcmweb-testserver: run the local Google-like DICOMweb server until SIGTERM/SIGINT.

The base URL is the only line written to stdout, so scripts can read it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from types import FrameType

from .. import __version__


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 0 and 65535")
    return port


def _seconds(text: str) -> float:
    from .operations import check_search_lag

    try:
        return check_search_lag(float(text))
    except ValueError as exc:  # float's own: "could not convert string to float: 'x'"
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcmweb-testserver",
        description="Local DICOMweb server that behaves like Google's Cloud Healthcare API.",
        epilog="Example: dcmweb-testserver --port 0 --data ./store --token secret",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s)")  # fmt: skip
    parser.add_argument("--port", type=_port, default=8080,
                        help="port (default: %(default)s); 0 picks a free one")  # fmt: skip
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="data directory (default: a temp dir removed on exit)")  # fmt: skip
    parser.add_argument("--token", default=None, metavar="T",
                        help="require this bearer token, also on /_control (default: "
                        "none)")  # fmt: skip
    parser.add_argument(
        "--token-endpoint", action="store_true",
        help="with --token, also answer POST /token with it (for google-auth tests): any "
        "caller can then get the token; without --token, /token always answers",
    )  # fmt: skip
    parser.add_argument(
        "--delete-delay", type=float, default=1.0, metavar="S",
        help="seconds a study or series delete's operation runs, its instances removed "
        "one by one (default: %(default)s); an instance delete is immediate",
    )  # fmt: skip
    parser.add_argument(
        "--search-lag", type=_seconds, default=0.0, metavar="S",
        help="seconds a deleted instance still shows in searches, as on Google, while "
        "retrieve and metadata answer 404 (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--no-match-status", type=int, choices=(200, 204), default=204,
        help="status of a search without results: 204 and no body, as Google (default), "
        "or 200 []",
    )  # fmt: skip
    parser.add_argument(
        "--search-keys", choices=("google", "extended"), default="google",
        help="search keys: the ones Google documents (default), or more with wildcards",
    )  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    parser.add_argument("-V", "--version", action="version",
                        version=f"%(prog)s, version {__version__}",
                        help="show the version and exit")  # as dcmweb's
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .server import LocalServer
    from .storage import DataDirError

    temp_dir = None
    data = args.data
    if data is None:
        temp_dir = tempfile.TemporaryDirectory(prefix="dcmweb-testserver-")
        data = temp_dir.name
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = LocalServer(
        data,
        args.host,
        args.port,
        token=args.token,
        token_endpoint=args.token is None or args.token_endpoint,
        delete_delay=args.delete_delay,
        no_match_status=args.no_match_status,
        verbose=args.verbose,
        search_keys=args.search_keys,
        search_lag=args.search_lag,
    )
    try:
        server.start()
    except DataDirError as exc:
        print(f"dcmweb-testserver: cannot use --data {data}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    except OSError as exc:
        print(f"dcmweb-testserver: cannot listen on {args.host}:{args.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        print(server.url, flush=True)
        while not stop.wait(0.5):  # a timeout keeps signals handled promptly
            pass
    finally:
        server.stop()
        if temp_dir is not None:
            temp_dir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
