"""AppTest: a user whose analysis waits for a free worker is told so, with its place in line
(``appkit.queue_notice`` / ``appkit.wait_for`` over ``hdcnn.scheduler``)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

TIMEOUT = 60


def _notice_script() -> None:
    import streamlit as st

    import appkit
    from hdcnn.scheduler import QueueStatus

    appkit.queue_notice(QueueStatus(3, 2, 4, 2, 4.2), st.empty())
    appkit.queue_notice(QueueStatus(0, 2, 0, 2), st.empty(), what="This view")  # runs: nothing


def test_a_queued_analysis_shows_its_place_in_line() -> None:
    at = AppTest.from_function(_notice_script, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [i.value for i in at.info] == [
        "Your analysis is queued: number 3 in line (2 analyses running, 2 at a time on this "
        "server); it should start in about 4 s."
    ]


def _waiting_script() -> None:
    import threading

    import streamlit as st

    import appkit
    from hdcnn.scheduler import AnalysisPool

    pool = AnalysisPool(1)
    gate = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(60)

    pool.submit(hold)
    started.wait(60)
    job = pool.submit(lambda: "verdict")
    drawn: list[tuple[int, str]] = []
    real = appkit.queue_notice

    def notice(status, place, *, what):  # the page's own notice, and the worker is let go
        real(status, place, what=what)
        drawn.append((status.position, status.describe(what)))
        gate.set()

    appkit.queue_notice = notice
    try:
        value = appkit.wait_for(job)
    finally:
        appkit.queue_notice = real
        pool.shutdown()
    st.write(f"{value}: {drawn[0][0]}, {drawn[0][1]}")


def test_the_page_waits_for_its_job_showing_the_queue_then_gets_the_value() -> None:
    at = AppTest.from_function(_waiting_script, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.info  # the notice is gone once the job ran
    assert at.markdown[0].value.startswith(
        "verdict: 1, Your analysis is queued: next in line (1 analysis running, 1 at a time"
    )
