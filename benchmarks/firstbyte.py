"""Time to the first request byte: how long a fresh `dcmweb retrieve` process takes
before its request reaches the server, against curl's, for the same GET.

    python -m benchmarks.firstbyte HOST PATH [--rounds 15] [--dcmweb PATH ...]

HOST is a running DICOMweb server on 127.0.0.1 (Orthanc, dcmweb-testserver) and PATH a
study on it (studies/UID). A loopback forwarder in front of HOST notes when each
connection's first byte arrives; the clients run interleaved, one round after the other,
each writing into a fresh folder. The issue's "fixed cost before the first byte" is
dcmweb's time to the first byte minus curl's. ``--dcmweb`` more than once compares
installations (an older release, a wheel against an editable install) in the same rounds.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class Forwarder:
    """Pipes loopback connections to the server; records each one's first byte time."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_bytes: list[float] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        first = client.recv(65536)
        self.first_bytes.append(time.perf_counter())
        server = socket.create_connection(self.upstream)
        server.sendall(first)
        threading.Thread(target=_pipe, args=(server, client), daemon=True).start()
        _pipe(client, server)

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 20):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def timed(forwarder: Forwarder, command: list[str]) -> tuple[float, float]:
    """(seconds to the first request byte, seconds of the whole process)."""
    seen = len(forwarder.first_bytes)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ended = time.perf_counter()
    first = forwarder.first_bytes[seen] if len(forwarder.first_bytes) > seen else ended
    return first - started, ended - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("path")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dcmweb", action="append", help="a dcmweb command to time"
                        " (repeatable; default: the one beside this Python)")
    args = parser.parse_args()
    parts = urlsplit(args.host)
    forwarder = Forwarder((parts.hostname or "127.0.0.1", parts.port or 80))
    host = urlunsplit(parts._replace(netloc=f"127.0.0.1:{forwarder.port}"))
    work = Path(tempfile.mkdtemp(prefix="dcmweb-firstbyte-"))
    commands = args.dcmweb or [str(Path(sys.executable).with_name("dcmweb"))]
    clients: dict[str, Callable[[str], list[str]]] = {
        f"{command} retrieve": _retrieve(command, host, args.path) for command in commands}
    clients["curl -o"] = lambda out: ["curl", "-sS", "--fail", "-o", f"{out}.multipart",
                                      "-H", f"Accept: {ACCEPT}", f"{host}/{args.path}"]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    floor: list[float] = []
    try:
        for round_number in range(args.rounds):
            for name, command in clients.items():
                out = str(work / f"{round_number}-{len(times[name])}-{abs(hash(name))}")
                times[name].append(timed(forwarder, command(out)))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor.append(time.perf_counter() - started)
    finally:
        forwarder.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.rounds} rounds, medians (min-max)")
    print("| client | first request byte | whole process |")
    print("| --- | ---: | ---: |")
    for name, pairs in times.items():
        firsts, wholes = [p[0] for p in pairs], [p[1] for p in pairs]
        print(f"| {name} | {_ms(firsts)} | {_ms(wholes)} |")
    print(f"| python -c pass | | {_ms(floor)} |\n")
    curl_first = statistics.median(p[0] for p in times["curl -o"])
    for name, pairs in times.items():
        if name != "curl -o":
            first = statistics.median(p[0] for p in pairs)
            print(f"fixed cost before the first byte, {name}: "
                  f"{(first - curl_first) * 1000:.0f} ms")


def _retrieve(command: str, host: str, path: str) -> Callable[[str], list[str]]:
    return lambda out: [command, host, "retrieve", path, "-o", out]


def _ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:.0f} ms "
            f"({min(values) * 1000:.0f}-{max(values) * 1000:.0f})")


if __name__ == "__main__":
    main()
