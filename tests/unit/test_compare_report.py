"""The before/after report reads what the benchmarks print and compares at Postfix's best."""

from benchmarks.compare_report import (
    Sample,
    accept_samples,
    peer_samples,
    report,
    throughput_samples,
    tsv_rows,
)

ACCEPT_OUTPUT = """\
| backend | size | mode | clients | runs | median accepted msgs/s | min | max \
| engine cores | loadgen cores | machine busy | disturbed |
|---|---|---|---|---|---|---|---|---|---|---|---|
| sqlite | 2048 | conn | 20 | 1 | **2110** | 2110 | 2110 | 1.22 | 0.39 | 83% | 0 |
| postgres | 20480 | reuse | 20 | 1 | **1613** | 1613 | 1613 | 1.06 | 0.32 | 95% | 1 |
"""

THROUGHPUT_OUTPUT = """\
| backend | size | layout | domains | runs | accepted msgs/s | delivered msgs/s \
| p50 accept→delivery | p99 accept→delivery |
|---|---|---|---|---|---|---|---|---|
| sqlite | 2048 | split | 1000 | 1 | 1203 | **760** | 0.090 s | 0.240 s |
"""

PEER_TSV = (
    "label\tsize\tsessions\tn\trun\telapsed_s\tmsgs_per_s\tinject_s\tinject_per_s\tstatus\n"
    "postfix/nodkim/conn\t2048\t20\t10000\t1\t17.0\t588.2\t16.8\t595.2\tdisturbed\n"
    "postfix/nodkim/conn\t2048\t20\t10000\t1\t16.0\t625.0\t15.9\t628.9\tok\n"
    "postfix/dkim/conn\t2048\t20\t3000\t1\t14.8\t203.0\t14.7\t204.1\tok\n"
    "postfix/dkim/conn\t20480\t20\t3000\t1\t300.0\t10.0\t300.0\t10.0\tsink_incomplete\n"
)


def test_accept_table_gives_one_sample_per_row() -> None:
    samples = accept_samples("before", "2 processes", 1, "noise\n" + ACCEPT_OUTPUT)
    assert samples == [
        Sample("before", "accept", "2 processes", "sqlite", 2048, "conn", 1, 2110.0),
        Sample("before", "accept", "2 processes", "postgres", 20480, "reuse", 1, 1613.0, True),
    ]


def test_throughput_table_gives_delivered_rate() -> None:
    assert throughput_samples("after", "split", 2, THROUGHPUT_OUTPUT) == [
        Sample("after", "e2e", "split", "sqlite", 2048, "conn", 2, 760.0)
    ]


def test_peer_rows_keep_the_last_attempt_and_report_failures() -> None:
    samples, failed = peer_samples(1, tsv_rows(PEER_TSV))
    assert samples == [
        Sample("postfix", "accept", "20 sessions", "", 2048, "conn", 1, 628.9),
        Sample("postfix", "e2e", "20 sessions", "", 2048, "conn", 1, 203.0),
    ]
    assert failed == ["postfix/dkim/conn 20480 B 20 sessions: sink_incomplete"]


def test_report_uses_medians_and_postfix_at_its_best_session_count() -> None:
    samples = [
        *(Sample("postfix", "accept", "20 sessions", "", 2048, "conn", r, 500.0) for r in (1, 2)),
        *(Sample("postfix", "accept", "50 sessions", "", 2048, "conn", r, 400.0) for r in (1, 2)),
        Sample("before", "accept", "1 process", "sqlite", 2048, "conn", 1, 900.0),
        Sample("before", "accept", "1 process", "sqlite", 2048, "conn", 2, 1100.0),
        Sample("after", "accept", "1 process", "sqlite", 2048, "conn", 1, 1050.0),
        Sample("after", "accept", "1 process", "sqlite", 2048, "conn", 2, 1050.0, True),
    ]
    row = report(samples).splitlines()[2]
    assert row == (
        "| accept, 1 process, sqlite, 2 KB, conn | 500 (20 sessions) | 1,000 (900, 1,100) "
        "| 2.00x | 1,050 (1,050, 1,050*) | 2.10x | 1.05x |"
    )
