"""The shared request gate: outages ridden out by every worker together, AIMD
concurrency, shared Retry-After, --max-rate, and what the summary can say."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request

from dcmweb import Client, throttle
from dcmweb.cli import cli
from dcmweb.http import Http, HttpConfig, RetryPolicy
from dcmweb.throttle import Gate, Outcome, parse_rate
from dcmweb_devtools import corpus


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the gate on its own ----------------------------------------------------------------------
def test_throttling_halves_the_limit_once_per_wave_and_grows_it_back() -> None:
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    sent = [gate.enter(float("inf")) for _ in range(8)]
    assert gate.limit == 8
    clock.now += 0.1
    for sent_at in sent:  # eight refusals to requests already in flight: one cut
        gate.leave(Outcome.THROTTLED, sent_at or 0.0)
    assert gate.limit == 4
    again = gate.enter(float("inf"))
    clock.now += 0.1
    gate.leave(Outcome.THROTTLED, again or 0.0)  # sent after the cut: still too many
    assert gate.limit == 2
    for _ in range(2):
        clock.now += 0.5
        gate.leave(Outcome.OK, gate.enter(float("inf")) or 0.0)
    assert gate.limit == 3  # two successes in a row at limit 2, one second after the cut
    assert gate.stats.throttled == 9


def accept(gate: Gate, clock: Clock, count: int, seconds: float) -> None:
    """``count`` requests answered 2xx, evenly over ``seconds``."""
    for _ in range(count):
        clock.now += seconds / count
        sent_at = gate.enter(float("inf"))
        gate.leave(Outcome.OK, sent_at or 0.0)


def refuse(gate: Gate, outcome: Outcome = Outcome.OVER_QUOTA) -> None:
    """Three 429s (or 503s) to requests in flight together: the server pushes back (one
    now and then among successes is noise; see the next tests)."""
    sent = [gate.enter(float("inf")) or 0.0 for _ in range(3)]
    for sent_at in sent:
        gate.leave(outcome, sent_at)


def test_a_429_paces_requests_a_little_under_what_got_in() -> None:
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    accept(gate, clock, 40, 2.0)  # 20 requests/s got in
    assert gate.pace is None
    refuse(gate)
    assert gate.pace == pytest.approx(0.95 * 20, rel=0.06)
    first = gate.enter(float("inf"))
    assert first is not None
    assert gate.enter(clock.now) is None  # the next one waits for the pace
    clock.now += 1 / gate.pace
    assert gate.enter(float("inf")) == clock.now


def test_the_pace_grows_only_while_in_use_and_slowly_near_the_ceiling() -> None:
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    accept(gate, clock, 20, 1.0)
    refuse(gate)
    learned = gate.pace or 0.0
    accept(gate, clock, 5, 5.0)  # far under the pace: nothing learned from it
    assert gate.pace == learned
    accept(gate, clock, int(5 * learned), 5.0)  # at the pace, near the last ceiling
    assert learned * 1.05 < (gate.pace or 0.0) < learned * 1.15  # 2 %/s, not 20 %/s


def test_a_429_before_enough_answers_learns_no_pace() -> None:
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    accept(gate, clock, 3, 1.0)
    refuse(gate)
    assert gate.pace is None and gate.limit == 4  # concurrency still halves


def test_503s_in_a_row_cut_concurrency_but_learn_no_pace() -> None:
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    accept(gate, clock, 40, 1.0)
    refuse(gate, Outcome.THROTTLED)
    assert gate.pace is None and gate.limit == 4


@pytest.mark.parametrize("outcome", [Outcome.OVER_QUOTA, Outcome.THROTTLED])
def send_together(gate: Gate, clock: Clock, refused: int, outcome: Outcome) -> None:
    """Eight requests sent together, ``refused`` of them refused: the refusals come back
    first (in milliseconds), then the successes. (A limit under 8 ends the wait for a
    slot at a deadline: the assertions on the limit then tell.)"""
    sent = [gate.enter(clock.now + 60) or 0.0 for _ in range(8)]
    clock.now += 0.005
    for sent_at in sent[:refused]:
        gate.leave(outcome, sent_at)
    clock.now += 0.3
    for sent_at in sent[refused:]:
        gate.leave(Outcome.OK, sent_at)


@pytest.mark.parametrize("outcome", [Outcome.OVER_QUOTA, Outcome.THROTTLED])
def test_sparse_429s_and_503s_among_successes_cut_nothing(outcome: Outcome) -> None:
    """Random 429s or 503s among successes are noise: each had halved the concurrency
    and cut the pace to 95 % of a rate its own waits had lowered, so 2 % of a chaos
    run's uploads refused drove the pace to 1/s (2,000 files: 425 s, not 10). Two
    refusals among eight requests sent together are noise too (a refusal overtakes the
    successes sent with it: "two in a row" still cut the pace)."""
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    gate._cond = VirtualWait(clock)  # a pace wait moves the clock
    for refused in [1, 0, 2, 0, 0, 1] * 5:
        send_together(gate, clock, refused, outcome)
    assert gate.pace is None and gate.limit == 8
    assert gate.stats.throttled == 20
    send_together(gate, clock, 3, outcome)  # three of eight: the server pushes back
    assert gate.limit == 4
    assert (gate.pace is not None) == (outcome is Outcome.OVER_QUOTA)


def test_searches_that_settle_lost_answers_count_in_the_rate_that_got_in() -> None:
    """A search after a lost answer does not end an outage, but the quota counts it, and
    the pace spaces it: left out of the rate, half of what a paced run sent was missing
    from it, and each 429 cut the pace by half again."""
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock, backoff_base=0.0)
    for _ in range(20):  # 20 requests/s got in: half of them searches
        clock.now += 0.05
        gate.leave(Outcome.OK, gate.enter(float("inf")) or 0.0)
        clock.now += 0.05
        gate.leave(Outcome.OK, gate.enter(float("inf")) or 0.0, ends_outage=False)
    refuse(gate)
    assert gate.pace == pytest.approx(0.95 * 20, rel=0.06)


def test_a_lone_failure_holds_no_other_request() -> None:
    """A drop or a 503 among successes is that request's own: the others go on at once,
    and no outage begins (every worker had paused 0.5-1 s for each one: 8 % of uploads
    dropped cost a bulk store 70 % of its rate). A second failure in a row is an
    outage's, counted from the first one's sending."""
    clock = Clock()
    gate = Gate(max_in_flight=6, clock=clock)
    gate._cond = VirtualWait(clock)  # a wait moves the clock: enter's answer shows it
    for outcome in (Outcome.UNAVAILABLE, Outcome.THROTTLED):
        accept(gate, clock, 20, 1.0)
        sent = [gate.enter(float("inf")) or 0.0 for _ in range(3)]
        clock.now += 0.01
        own = gate.leave(outcome, sent[0])
        assert gate.wait_left() == (0.0, False)
        now = clock.now
        assert gate.enter(now + 5) == now  # another request goes out at once
        assert gate.outage_seconds() == 0
        assert own  # the failed request waits its own backoff (see Http)
        clock.now += 0.01
        for sent_at in [*sent[1:], now]:
            gate.leave(Outcome.OK, sent_at)
    assert gate.limit == 6  # nor does a lone 503 cut the concurrency
    assert gate.unavailable_seconds == 0

    first, second = gate.enter(float("inf")) or 0.0, gate.enter(float("inf")) or 0.0
    clock.now += 0.5
    assert gate.leave(Outcome.UNAVAILABLE, first)
    assert not gate.leave(Outcome.UNAVAILABLE, second)  # the next news is a failure too
    assert gate.wait_left()[0] >= 0.5  # the shared backoff: every worker waits
    assert gate.outage_seconds() == 0.5  # since the first one was sent


@pytest.mark.parametrize("retry_after", [None, 1.0])
def test_a_lone_429_holds_its_request_and_a_quota_every_request(retry_after: float | None
                                                                ) -> None:
    """A 429 among successes is its request's own, Retry-After or not: every worker had
    waited for each (3 % random 429s cost a 5,000-file store 80 % of its rate). When
    the server pushes back (3 of the last 8 answers), it is the quota every worker
    shares: they all wait, for its Retry-After or the shared backoff."""
    clock = Clock()
    gate = Gate(max_in_flight=6, clock=clock)
    accept(gate, clock, 40, 2.0)
    assert gate.leave(Outcome.OVER_QUOTA, gate.enter(float("inf")) or 0.0, retry_after)
    assert gate.wait_left() == (0.0, False) and gate.outage_seconds() == 0
    sent = [gate.enter(float("inf")) or 0.0 for _ in range(2)]
    assert not any([gate.leave(Outcome.OVER_QUOTA, sent_at, retry_after) for sent_at in sent])
    assert gate.wait_left()[0] >= 0.5


class VirtualWait(threading.Condition):
    """The gate's condition with waits that move the fake clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0.0
        return False


def test_a_per_minute_quota_paces_at_its_share_after_the_first_minute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Google counts a project's quota per minute: a minute's 1,200 requests go out in a
    burst, then every request gets a 429 (no Retry-After) until the next minute. The pace
    must settle near 20/s; measured over a shorter history than the minute, the rate
    that got in read as 0 and the pace fell to 1/s."""
    monkeypatch.setattr(throttle, "jitter", random.Random(7).uniform)  # a repeatable run
    clock = Clock()
    gate = Gate(max_in_flight=8, clock=clock)
    gate._cond = VirtualWait(clock)  # single-threaded simulation of 8 workers
    latency, per_minute, start = 0.05, 1200, clock.now
    used: dict[int, int] = {}
    in_flight: list[tuple[float, float, bool]] = []  # (answered at, sent at, accepted)
    accepted_after_first_minute = 0
    while clock.now < start + 240:
        if in_flight and (len(in_flight) >= gate.limit or in_flight[0][0] <= clock.now):
            answered, sent_at, ok = in_flight.pop(0)
            clock.now = max(clock.now, answered)
            gate.leave(Outcome.OK if ok else Outcome.OVER_QUOTA, sent_at)
            accepted_after_first_minute += ok and sent_at >= start + 60
            continue
        sent_at = gate.enter(float("inf"))
        assert sent_at is not None
        minute = int((sent_at - start) // 60)
        ok = used.get(minute, 0) < per_minute
        used[minute] = used.get(minute, 0) + ok
        in_flight.append((sent_at + latency, sent_at, ok))
        in_flight.sort()
    # Three minutes' quota is 3,600 (the old pace got 1,473 of them); the pace probes a
    # little above 20/s and falls back on each minute's first 429: a few per minute.
    assert accepted_after_first_minute > 0.9 * 3 * per_minute, accepted_after_first_minute
    assert gate.stats.throttled < 60, gate.stats.throttled
    assert gate.pace is not None and 14 < gate.pace < 30, gate.pace


def test_outage_time_is_measured_and_ended_by_any_answer() -> None:
    clock = Clock()
    gate = Gate(clock=clock, outage_limit=60, backoff_base=0.0)
    gate.leave(Outcome.UNAVAILABLE, gate.enter(float("inf")) or 0.0)
    clock.now += 45
    assert gate.outage_seconds() == 45 and not gate.outage_over_limit()
    clock.now += 15
    assert gate.outage_over_limit()
    gate.leave(Outcome.ANSWERED, gate.enter(float("inf")) or 0.0)  # a 404 is an answer
    assert gate.outage_seconds() == 0
    assert gate.unavailable_seconds == 60


def test_a_write_the_server_carried_out_opens_no_outage() -> None:
    """A STOW whose answer was lost, found on the server by the search after it: old
    dcmweb counted the time from its sending to the resend's answer as an outage (a lone
    lost answer closed the run with "server unavailable for 1 s")."""
    clock = Clock()
    gate = Gate(clock=clock, backoff_base=0.0)
    sent_at = gate.enter(float("inf")) or 0.0
    clock.now += 5
    gate.leave(Outcome.UNAVAILABLE, sent_at)
    clock.now += 2
    gate.carried_out(sent_at)
    assert gate.outage_seconds() == 0
    gate.leave(Outcome.OK, gate.enter(float("inf")) or 0.0)
    assert gate.unavailable_seconds == 0

    clock.now += 10  # a failure before it (another worker's) began a real outage
    gate.leave(Outcome.UNAVAILABLE, gate.enter(float("inf")) or 0.0)
    clock.now += 3
    later = gate.enter(float("inf")) or 0.0
    gate.leave(Outcome.UNAVAILABLE, later)
    gate.carried_out(later)
    assert gate.outage_seconds() == 3


def test_the_backoff_never_waits_past_the_outage_limit() -> None:
    """The last wait ends at the limit, for one more try there (a limit of 10 s gave up
    after 11-17 s: a whole backoff step past it)."""
    clock = Clock()
    gate = Gate(clock=clock, outage_limit=10, backoff_base=8.0)
    gate.leave(Outcome.UNAVAILABLE, gate.enter(float("inf")) or 0.0)  # down since 100
    clock.now += 8
    gate.leave(Outcome.UNAVAILABLE, gate.enter(float("inf")) or 0.0)  # step 2: 8-16 s
    assert gate.wait_left() == (2.0, False)  # until 110, the limit: not 116-124
    clock.now += 2
    gate.leave(Outcome.UNAVAILABLE, gate.enter(float("inf")) or 0.0)
    assert gate.outage_over_limit()


@pytest.mark.parametrize(("max_rate", "tries", "token"), [
    (1 / 1.5, [100.0, 101.5, 103.0], 104.5), (0.5, [100.0, 102.0], 104.0)])
def test_the_rate_never_holds_a_try_past_the_outage_limit(max_rate: float, tries: list[float],
                                                         token: float) -> None:
    """A try the rate's token allows at the limit goes (one more try there, as for the
    backoff); one it would hold past the limit waits for the limit only, and is not sent
    (--max-rate 1, --outage-limit 3: the last try went at 3.8 s)."""
    clock = Clock()
    gate = Gate(clock=clock, outage_limit=3, max_rate=max_rate, backoff_base=0.0)
    gate._cond = VirtualWait(clock)
    sent: list[float] = []
    for _ in range(len(tries) + 2):
        sent_at = gate.enter(float("inf"))  # down since 100, the first failure's sending
        if sent_at is None:
            break
        sent.append(sent_at)
        gate.leave(Outcome.UNAVAILABLE, sent_at)
    assert sent == tries
    assert clock.now == 103.0  # the limit: not the next token's time
    assert gate.rate_past_outage_limit() == "max_rate"  # Http gives up on it at once
    # A check of what a write left (a search) still goes, at the token's time.
    assert gate.enter(float("inf"), within_outage_limit=False) == token


def test_a_new_call_ends_the_outage_clock_only_when_nothing_else_is_under_way() -> None:
    clock = Clock()
    gate = Gate(clock=clock, outage_limit=60, backoff_base=10.0)
    gate.leave(Outcome.UNAVAILABLE, gate.enter(float("inf")) or 0.0)  # down since 100
    clock.now += 10  # the backoff (5-10 s) is over
    busy = gate.enter(float("inf")) or 0.0
    clock.now += 5
    gate.new_call()  # another call's request is in flight: it shares the clock
    assert gate.outage_seconds() == 15
    gate.leave(Outcome.UNAVAILABLE, busy)  # the last failure, at 115
    assert gate.wait_left()[0] >= 10  # the second step of the backoff
    clock.now += 100  # nothing asked for 100 s
    gate.new_call()
    assert gate.outage_seconds() == 0
    assert gate.wait_left() == (0.0, False)  # the backoff starts again from its first step
    assert gate.unavailable_seconds == 15  # first failure to last, not the idle time
    gate.leave(Outcome.THROTTLED, gate.enter(float("inf")) or 0.0, retry_after=30)
    gate.new_call()
    assert gate.wait_left() == (30.0, True)  # what the server asked for still holds


def test_retry_after_is_shared_by_every_thread() -> None:
    gate = Gate(max_in_flight=4)
    gate.leave(Outcome.THROTTLED, gate.enter(float("inf")) or 0.0, retry_after=0.5)
    waited: list[float] = []

    def other_worker() -> None:
        started = time.monotonic()
        sent_at = gate.enter(float("inf"))
        waited.append(time.monotonic() - started)
        gate.leave(Outcome.OK, sent_at or 0.0)

    threads = [threading.Thread(target=other_worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waited) == 3 and min(waited) >= 0.4


def test_max_rate_spaces_requests() -> None:
    gate = Gate(max_in_flight=8, max_rate=20)
    started = time.monotonic()
    for _ in range(11):
        gate.leave(Outcome.OK, gate.enter(float("inf")) or 0.0)
    assert time.monotonic() - started >= 0.45  # ten intervals of 50 ms at least


@pytest.mark.parametrize(("max_rate", "level", "seconds"), [(1 / 60, "INFO", "60.0"),
                                                            (2.0, "DEBUG", "0.5")])
def test_a_wait_for_max_rate_is_logged_once(caplog: pytest.LogCaptureFixture,
                                            max_rate: float, level: str, seconds: str) -> None:
    """Old dcmweb: --max-rate 1/m held each request a minute without a line, even at -vv."""
    clock = Clock()
    gate = Gate(max_in_flight=8, max_rate=max_rate, clock=clock)
    gate._cond = VirtualWait(clock)
    with caplog.at_level("DEBUG", logger="dcmweb"):
        for _ in range(2):
            gate.leave(Outcome.OK, gate.enter(float("inf")) or 0.0)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (level, f"waiting {seconds} s before the next request, for max_rate")]


def test_deadline_while_waiting_and_cancel() -> None:
    gate = Gate(max_in_flight=1)
    gate.enter(float("inf"))  # the only slot is taken
    assert gate.enter(time.monotonic() + 0.2) is None
    threading.Timer(0.2, gate.cancel).start()
    from dcmweb.throttle import Cancelled

    with pytest.raises(Cancelled):
        gate.enter(float("inf"))


@pytest.mark.parametrize(("text", "per_second"),
                         [("5", 5.0), ("5/s", 5.0), ("120/m", 2.0), ("3600/h", 1.0),
                          ("0.5", 0.5)])
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["0", "-1", "x", "5/d", "", "/s", "inf", "nan"])
def test_bad_rates_are_usage_errors(text: str) -> None:
    # Old dcmweb: 'x' got float()'s "could not convert string to float: 'x'".
    with pytest.raises(ValueError, match=r"write N, N/s, N/m or N/h with N > 0"):
        parse_rate(text)
    if not text:
        return  # an empty option value means "no limit", like leaving it out
    result = run("--max-rate", text, "http://127.0.0.1:9/dicom-web", "search")
    assert result.exit_code == 2
    assert "--max-rate" in result.stderr


# -- against servers --------------------------------------------------------------------------
def test_outage_at_the_start_of_a_bulk_store_is_ridden_out(local_server, tmp_path: Path
                                                           ) -> None:
    """0.1: 503 to the first 50 uploads ended a 2,000-file run with exit 5, 0 stored."""
    corpus.synthetic_files(tmp_path / "in", 2000)
    local_server.inject_fault(503, count=50, retry_after="0", method="POST")
    result = run("-m", "--workers", "6", local_server.url, "store", str(tmp_path / "in"))
    assert result.exit_code == 0, result.stderr[-2000:]
    assert "Transferred" in result.stderr and "in 2000 files" in result.stderr
    rows = local_server.store.query("SELECT COUNT(*) AS n FROM instances")
    assert rows[0]["n"] == 2000
    statuses = [r.status for r in local_server.requests if r.method == "POST"]
    assert statuses.count(503) == 50
    assert "failed" not in result.stderr


def test_lone_failures_in_a_store_hold_no_other_worker(local_server, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    """A drop, a 503 and a drop, each to one upload far from the others, while six
    workers store: each failed request waits its own backoff, and the server is never
    counted unavailable (each had held every worker 0.5-1 s, an outage from its sending
    to the next success)."""
    files = sorted(corpus.synthetic_files(tmp_path / "in", 600, studies=3, seed="lone"))
    # Past the first batches: a failure before any success may be an outage's.
    for index, fault in ((150, {"drop": True}), (350, {"status": 503}), (550, {"drop": True})):
        local_server.inject_fault(**fault, method="POST",
                                  body_contains=corpus.sop_instance_uid(files[index]))
    with caplog.at_level("INFO", logger="dcmweb"), Client(local_server.url, workers=6) as client:
        results = client.store(files)
        stats = client.http.stats
    assert [r.status for r in results] == ["stored"] * 600
    statuses = [r.status for r in local_server.requests if r.method == "POST"]
    assert statuses.count(None) == 2 and statuses.count(503) == 1  # each fault hit once
    assert stats.unavailable_seconds == 0
    # The 503's request waited its own backoff, not the one every worker shares.
    assert re.search(r"HTTP 503 Service Unavailable; retrying in \d", caplog.text)


def test_a_lone_429_in_a_store_holds_no_other_worker(local_server, tmp_path: Path) -> None:
    """A 429 with Retry-After: 1 to one upload among successes: only that batch waits its
    second; the other workers go on storing meanwhile (every worker had waited it: 3 %
    random 429s cost a 5,000-file store 80 % of its rate)."""
    files = sorted(corpus.synthetic_files(tmp_path / "in", 300, studies=3, seed="lone429"))
    local_server.inject_fault(429, retry_after="1", method="POST",
                              body_contains=corpus.sop_instance_uid(files[100]))
    with Client(local_server.url, workers=4) as client:
        results = client.store(files, batch_size=2)
        stats = client.http.stats
    assert [r.status for r in results] == ["stored"] * 300
    posts = [r for r in local_server.requests if r.method == "POST"]
    refused = next(i for i, r in enumerate(posts) if r.status == 429)
    retried = next(i for i, r in enumerate(posts) if i > refused
                   and r.body_sha256 == posts[refused].body_sha256)
    # Sent while the refused batch waited its Retry-After (beyond the 3 already in flight).
    assert retried - refused > 20, (refused, retried)
    assert stats.throttled == 1 and stats.retries == 1 and stats.unavailable_seconds == 0


def quota_route(limit: int, hits: list[int]) -> tuple[object, list[int]]:
    """200 while at most ``limit`` requests are being handled, 429 beyond (a quota)."""
    lock = threading.Lock()
    active = [0]

    def action(req: Request) -> None:
        with lock:
            active[0] += 1
            over = active[0] > limit
        try:
            if over:
                hits.append(429)
                req.reply(429, b"quota exceeded", "text/plain", headers={"Retry-After": "0"})
            else:
                time.sleep(0.02)
                hits.append(200)
                req.reply(200, b"[]", "application/dicom+json")
        finally:
            with lock:
                active[0] -= 1
    return action, hits


def test_a_storm_of_429s_fails_nothing_and_stays_bounded() -> None:
    hits: list[int] = []
    with Hostile() as fake:
        action, _ = quota_route(2, hits)
        fake.route("GET", "/studies", action)  # type: ignore[arg-type]
        http = Http(config=HttpConfig(pool_size=8, retry=RetryPolicy(base=0.05)))
        errors: list[BaseException] = []

        def worker() -> None:
            for _ in range(25):
                try:
                    http.request("GET", fake.url + "/studies")
                except BaseException as error:  # collected and asserted below
                    errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        http.close()
    assert errors == []
    assert hits.count(200) == 200
    # Eight workers against a quota of two: without the gate most attempts were 429s.
    assert hits.count(429) < 60, hits.count(429)


def test_stats_say_how_long_the_server_was_unavailable(local_server, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 4)
    local_server.inject_fault(503, count=3, retry_after="1", method="POST")
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store(files)
        stats = client.http.stats
    assert [r.status for r in results] == ["stored"] * 4
    assert stats.retries == 3
    assert stats.throttled == 3
    assert stats.unavailable_seconds >= 2.5


def test_store_summary_says_how_long_the_server_was_unavailable(local_server, tmp_path: Path
                                                                ) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 2)
    local_server.inject_fault(503, count=2, retry_after="1", method="POST")
    result = run(local_server.url, "store", *map(str, files))
    assert result.exit_code == 0, result.stderr
    summary = result.stderr.splitlines()[-1]
    assert re.search(r"in 2 files; server unavailable for [23] s$", summary), summary


def test_stats_count_a_store_resent_after_a_lost_answer_as_a_retry(local_server, tmp_path: Path
                                                                   ) -> None:
    """A batch whose answer was lost is resent by the store, not by Http: its resends were
    missing from ``stats.retries`` (0 after three resends)."""
    files = corpus.synthetic_files(tmp_path / "in", 4)
    local_server.inject_fault(drop=True, count=3, method="POST")  # before the server stores
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store(files)
        stats = client.http.stats
    assert [r.status for r in results] == ["stored"] * 4
    posts = [r.status for r in local_server.requests if r.method == "POST"]
    assert posts == [None, None, None, 200]  # one batch, sent four times
    assert stats.retries == 3


def test_stats_count_a_delete_resent_after_a_lost_answer_as_a_retry(local_server,
                                                                    tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 1)
    with Client(local_server.url) as client:
        [stored] = client.store(files)
        local_server.inject_fault(after=True, method="DELETE")  # deleted, answer lost
        client.delete(f"studies/{stored.study_instance_uid}/series/"
                      f"{stored.series_instance_uid}/instances/{stored.sop_instance_uid}")
        stats = client.http.stats
    deletes = [r.status for r in local_server.requests if r.method == "DELETE"]
    assert deletes == [200, 404]  # answered 200, the answer dropped; the resend: 404
    assert stats.retries == 1
