"""The flow driver: outcomes are sent, failures thrown in as the real OSError."""

from __future__ import annotations

import errno

import pytest

from refresh_engine import (
    Done,
    Failed,
    Flow,
    FlowRunner,
    InterpreterMismatch,
    Open,
    Opened,
    OpenFlags,
    Raised,
    Returned,
    ops,
)


def _open_or_default(path: str) -> Flow[str]:
    try:
        fd = yield from ops.open_file(path, OpenFlags.READ)
    except FileNotFoundError as exc:
        return f"missing errno={exc.errno}"
    yield from ops.close(fd)
    return f"opened fd={fd}"


def test_outcome_is_sent_and_value_returned() -> None:
    runner = FlowRunner(_open_or_default("/x"))
    assert runner.start() == Open("/x", OpenFlags.READ)
    step = runner.resume(Opened(7))
    assert runner.pending == step
    assert runner.resume(Done()) == Returned("opened fd=7")


def test_failure_is_thrown_in_as_the_matching_oserror() -> None:
    runner = FlowRunner(_open_or_default("/x"))
    runner.start()
    failed = Failed("FileNotFoundError", errno.ENOENT, "No such file or directory")
    assert runner.resume(failed) == Returned(f"missing errno={errno.ENOENT}")


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("FileExistsError", errno.EEXIST, FileExistsError),
        ("BlockingIOError", errno.EWOULDBLOCK, BlockingIOError),
        ("PermissionError", errno.EACCES, PermissionError),
        ("ConnectionResetError", None, ConnectionResetError),
    ],
)
def test_failed_round_trips_to_exception(name: str, code: int | None, expected: type) -> None:
    exc = Failed(name, code, "boom", winerror=32 if code == errno.EACCES else None).to_exception()
    assert type(exc) is expected
    assert exc.errno == code
    assert Failed.from_exception(exc).exception_type == name


def test_wrong_outcome_kind_is_an_interpreter_bug() -> None:
    runner = FlowRunner(_open_or_default("/x"))
    runner.start()
    result = runner.resume(Done())
    assert isinstance(result, Raised)
    assert isinstance(result.error, InterpreterMismatch)
    assert "Open expects Opened, got Done" in str(result.error)


def test_close_abandons_a_flow_with_cleanup_pending() -> None:
    def holds_lock() -> Flow[None]:
        fd = yield from ops.open_file("/lock", OpenFlags.WRITE)
        try:
            yield from ops.sleep(10)
        finally:
            yield from ops.close(fd)

    flow = holds_lock()
    runner = FlowRunner(flow)
    runner.start()
    runner.resume(Opened(3))
    runner.close()  # a killed process runs no cleanup: no error escapes
    assert flow.gi_frame is None  # and the flow is really gone, not left suspended
    with pytest.raises(RuntimeError, match="cannot resume"):
        runner.resume(Done())


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # a date is not acted on
        ("-1", None),
        (None, None),
    ],
)
def test_a_refusal_carries_its_retry_after_in_whole_seconds(
    header: str | None, wait: float | None
) -> None:
    from refresh_engine import HttpResponse, parse_token_error

    headers = () if header is None else (("retry-after", header),)
    response = HttpResponse(429, b'{"error": "rate_limited"}', headers)
    assert response.header("Retry-After") == header
    refused = parse_token_error(response.status, response.body, response.header("retry-after"))
    assert (refused.code, refused.retry_after) == ("rate_limited", wait)
