"""The benchmarks still run with one command and print the lines the issues name.

Tiny sizes, so that a broken benchmark is found by ``make test`` rather than on the day
its figures are needed; the figures themselves are not checked (speed is measured by
the benchmarks, never asserted in tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FIGURE = r"\d+(\.\d+)?"


def _run(*args: str, timeout: float = 600) -> list[str]:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()


def test_bench_ingest_prints_every_figure_for_both_protocols_and_their_comparison() -> None:
    lines = _run("benchmarks/bench_ingest.py", "--events", "4000", "--latency-seconds", "1",
                 "--gateway-seconds", "1", "--skip-connect", timeout=900)
    text = "\n".join(lines)
    plain, _, secured = text.partition("=== Kafka SASL_SSL ===")
    assert "=== Kafka PLAINTEXT ===" in plain, text
    secured, _, comparison = secured.partition("=== the cost of security")
    for part in (plain, secured):
        for label in ("(a) bare aiokafka consumer", "(b) preuve worker -> SQLite",
                      "(c) preuve worker -> PostgreSQL", "(d) gateway",
                      "(f) PostgreSQL store alone", "latency at 5,000 events/s",
                      "CPU bound of (c)", "(g) PostgreSQL COPY floor",
                      "(h) Kafka Connect + Debezium JDBC sink: not measured: --skip-connect"):
            assert label in part, text
        assert re.search(r"peak RSS \d+ MiB", part), text
        assert re.search(r"p50 [\d,]+ ms, p99 [\d,]+ ms", part), text
    for figure in ("preload", "raw", "sqlite", "pg", "gateway", "p50_5000"):
        assert re.search(rf"^{figure} +[\d,]+ +[\d,]+ +[+-]\d+%", comparison, re.M), text
    # Every ratio last, each naming its baseline, for each protocol's run.
    _, _, ratios = comparison.partition("=== ratios, each against its baseline")
    ratio_lines = ratios.strip().splitlines()[1:]
    assert ratio_lines == lines[-len(ratio_lines):], text
    for line in ratio_lines:
        assert re.fullmatch(rf"ratio_\w+={FIGURE}  \(baseline: .+\)", line), line
    for protocol in ("PLAINTEXT", "SASL_SSL"):
        for name in ("ratio_worker_pg_to_raw", "ratio_worker_to_copy_floor"):
            assert re.search(rf"^{name}={FIGURE}  \(baseline: .*; Kafka {protocol}\)$",
                             ratios, re.M), text
    assert re.fullmatch(rf"ratio_worker_pg_sasl_ssl_to_plaintext={FIGURE}  \(baseline: .+\)",
                        lines[-1]), text


def test_ingest_peers_prints_the_copy_floor_and_the_connect_peer_with_their_ratios() -> None:
    """The worker's floor and peer (issue 20). Kafka Connect and Debezium come from Maven
    Central into the user's cache: when they are not there yet (no network in this test's
    budget), the COPY floor alone is run."""
    from experiments.settings import KafkaSettings, Settings

    home = Settings().cache_dir / "kafka-connect"
    connect_cached = ((home / KafkaSettings().version / "lib" / ".complete").exists()
                      and any(home.glob("debezium-*/plugins/.complete")))
    lines = _run("benchmarks/ingest_peers.py", "--events", "4000",
                 *(() if connect_cached else ("--skip-connect",)), timeout=900)
    text = "\n".join(lines)
    assert "(g) PostgreSQL COPY floor, 2,000-row transactions" in text, text
    assert re.search(rf"^ratio_worker_to_copy_floor={FIGURE}  \(baseline: .*COPY.*\)$",
                     text, re.M), text
    if connect_cached:
        assert re.search(rf"^ratio_worker_to_connect={FIGURE}  \(baseline: Kafka Connect.*\)$",
                         text, re.M), text
    assert lines[-1].startswith("ratio_"), text


def test_gateway_bench_prints_both_sides_and_its_ratios_last() -> None:
    lines = _run("benchmarks/ingest_gateway.py", "--seconds", "1", "--rounds", "1",
                 "--security", "PLAINTEXT", timeout=600)
    text = "\n".join(lines)
    for label in ("POST /v1/events", "POST /v1/xapi/statements"):
        assert re.search(rf"\(d\) gateway \(1 process\), {re.escape(label)}, .* accepted "
                         rf"events/s, gateway CPU {FIGURE} us/event, PostgreSQL \(receipts\) "
                         rf"-?{FIGURE} us/event", text), text
    assert text.count("bare aiokafka producer, same events") == 2, text
    baseline = r"  \(baseline: bare aiokafka producer, same 16x100 pattern\)"
    assert re.fullmatch(rf"ratio_gateway_to_producer={FIGURE}{baseline}", lines[-2]), text
    assert re.fullmatch(rf"ratio_gateway_xapi_to_producer={FIGURE}{baseline}", lines[-1]), text


def test_bench_analysis_prints_the_import_floor_and_the_ratio_last() -> None:
    lines = _run("benchmarks/bench_analysis.py", "--sizes", "5000")
    text = "\n".join(lines)
    assert re.search(rf"import_floor_s={FIGURE}", text), text
    assert re.search(rf"pupils=5000 classes=200 analyze_s={FIGURE} script_s={FIGURE} "
                     rf"ratio={FIGURE} analyze_full_s={FIGURE}", text), text
    assert re.search(r"analyze_peak_mb=\d+", text), text
    assert re.search(rf"itt_df={FIGURE}", text), text
    assert "ratio_full_protocol_to_script_5000=" in text, text
    assert any(re.fullmatch(rf"ratio_analyze_to_script_5000={FIGURE}", line)
               for line in lines), text
    # The mixed-model block (issue 15) comes last: against lme4 when Rscript is present.
    assert re.search(rf"mixed pupils=5000 classes=200 mixed_s={FIGURE}", text), text
    assert re.fullmatch(rf"ratio_mixed_to_lme4_5000=({FIGURE}|nan)", lines[-1]), text


def test_simulation_coverage_prints_a_line_per_design_and_estimator() -> None:
    lines = _run("benchmarks/simulation_coverage.py", "--trials", "3")
    for design in ("paired", "small-unbalanced", "large-strata", "pupil-randomised"):
        for estimator in ("cr2", "cr1", "cr1-strata", "cr0-normal"):
            assert any(re.fullmatch(
                rf"design={design} estimator={estimator} trials=3 coverage={FIGURE} "
                rf"mean_df=({FIGURE}|inf) mean_se={FIGURE} sd_estimate={FIGURE}", line)
                for line in lines), (design, estimator, lines)
