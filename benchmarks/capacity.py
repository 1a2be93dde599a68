"""National-scale capacity model of Preuve's ingest (benchmarks/README.md, "National-scale
capacity model"): from usage assumptions and measured per-event CPU figures to peak
events/s, Kafka partitions, cores, PostgreSQL size and write rate.

Every assumption is a named option, printed with the result, so that the table can be
recomputed when an assumption or a measured figure changes:

    .venv/bin/python benchmarks/capacity.py [--share 0.10] [--gateway-us 164] ...

The model is arithmetic, not a measurement: its inputs are (a) the usage assumptions,
each with its reason in ``--help``, and (b) CPU microseconds per event measured on this
repository's benchmarks (their origin is printed next to each figure).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    weekly_events: float
    average_eps: float
    peak_eps: float
    yearly_events: float
    cores: dict[str, float]
    stream_workers: int
    partitions: int
    bytes_per_year: float
    write_mb_s: float
    delete_month_s: float


def model(args: argparse.Namespace) -> Result:
    pupils_in = args.pupils * args.share
    weekly = pupils_in * args.sessions_per_week * args.events_per_session
    school_seconds = args.days_per_week * args.hours_per_day * 3600
    average = weekly / school_seconds
    peak = average * args.peak_factor
    cpu = {"gateways": args.gateway_us, "stream workers": args.worker_us,
           "PostgreSQL": args.postgres_us, "Kafka brokers": args.kafka_us}
    # Cores to carry the peak at the target utilisation (headroom for restarts and
    # rebalances: a killed worker's partitions land on the others).
    cores = {kind: peak * us * 1e-6 / args.utilisation for kind, us in cpu.items()}
    # A stream worker is one Python process (one core at most, the GIL): as many as cores,
    # and twice as many partitions, a power of two, so that every worker keeps at least
    # two when one of them is down and the group can grow without re-partitioning.
    workers = max(2, math.ceil(cores["stream workers"]))
    partitions = max(8, 2 ** math.ceil(math.log2(2 * workers)))  # 8: as scale_out.py runs
    yearly = weekly * args.weeks
    bytes_year = yearly * args.bytes_per_row
    write = peak * args.bytes_per_row * args.wal_factor / 1e6
    monthly_rows = yearly / 10  # ten school months
    return Result(weekly, average, peak, yearly, cores, workers, partitions, bytes_year, write,
                  monthly_rows * args.delete_us_per_row * 1e-6)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    # --- usage assumptions ---
    a("--pupils", type=float, default=12e6,
      help="pupils in France (DOMAIN.md: ~12-13 M [001][004])")
    a("--share", type=float, default=0.10,
      help="share of pupils whose resource is in a running experiment at the same time "
           "(DOMAIN.md: BRNE resources reach <5%% of their target pupils; 10%% is generous)")
    a("--sessions-per-week", type=float, default=3,
      help="sessions of the resource per pupil per school week (a class use twice a week, "
           "once at home)")
    a("--events-per-session", type=float, default=60,
      help="events per session (an exercise answered every ~20 s of a 20-minute session)")
    a("--days-per-week", type=float, default=4.5,
      help="school days per week (primary: 4 days, secondary: 4.5 to 5)")
    a("--hours-per-day", type=float, default=7,
      help="school hours per day over which use spreads (08:30-16:30 less lunch)")
    a("--peak-factor", type=float, default=3,
      help="busiest minute over the school-hours average: metropolitan France is one time "
           "zone and sessions start on the hour")
    a("--weeks", type=float, default=36,
      help="school weeks per year (the year has 36 weeks of classes, holidays are zoned; "
           "experiments/protocol/calendar.py holds the calendars)")
    a("--utilisation", type=float, default=0.5,
      help="target CPU utilisation at peak (headroom for kills, rebalances, catch-up)")
    # --- measured figures (defaults: benchmarks/README.md, issue 20) ---
    a("--gateway-us", type=float, default=164,
      help="gateway CPU per event, us: bench_ingest (d) before issue 20's gateway work")
    a("--worker-us", type=float, default=25,
      help="stream worker CPU per event, us: bench_ingest (c)")
    a("--postgres-us", type=float, default=29,
      help="PostgreSQL CPU per event, us: bench_ingest (c)")
    a("--kafka-us", type=float, default=113,
      help="Kafka broker CPU per event (produce + consume, SASL_SSL), us: scale_out.py "
           "(small requests: pessimistic)")
    a("--bytes-per-row", type=float, default=389,
      help="events table bytes per row, indexes included (pg_total_relation_size): "
           "partitioning.py / scale_out.py")
    a("--wal-factor", type=float, default=2.5,
      help="WAL and checkpoint writes per byte of table (full-page writes, indexes)")
    a("--delete-us-per-row", type=float, default=14,
      help="DELETE + VACUUM of a month in a plain table, us per row: partitioning.py "
           "(4M rows: 1.4 + 4.1 s for 395,596 rows)")
    return p


def main() -> None:
    args = parser().parse_args()
    r = model(args)
    print(f"assumptions: {args.pupils / 1e6:.0f} M pupils, {args.share:.0%} in experiments, "
          f"{args.sessions_per_week:g} sessions/week x {args.events_per_session:g} events, "
          f"{args.days_per_week:g} days x {args.hours_per_day:g} h, peak x{args.peak_factor:g}, "
          f"{args.weeks:g} weeks/year, {args.utilisation:.0%} CPU at peak")
    print(f"events per school week        {r.weekly_events:>16,.0f}")
    print(f"average over school hours     {r.average_eps:>16,.0f} events/s")
    print(f"peak                          {r.peak_eps:>16,.0f} events/s")
    print(f"events per school year        {r.yearly_events:>16,.0f}")
    origin = {"gateways": args.gateway_us, "stream workers": args.worker_us,
              "PostgreSQL": args.postgres_us, "Kafka brokers": args.kafka_us}
    for kind, cores in r.cores.items():
        print(f"{kind + ' cores':<30}{cores:>16,.1f}  ({origin[kind]:g} us CPU/event)")
    print(f"all ingest cores              {sum(r.cores.values()):>16,.1f}")
    print(f"stream worker processes       {r.stream_workers:>16,}")
    print(f"preuve.events partitions      {r.partitions:>16,}")
    print(f"PostgreSQL events per year    {r.bytes_per_year / 1e12:>16,.2f} TB "
          f"({args.bytes_per_row:g} bytes/row)")
    print(f"PostgreSQL write rate at peak {r.write_mb_s:>16,.1f} MB/s (x{args.wal_factor:g} "
          f"for WAL and checkpoints)")
    print(f"one month of events           {r.yearly_events / 10:>16,.0f} rows: DELETE + VACUUM "
          f"~{r.delete_month_s / 60:,.0f} min; DROP PARTITION: milliseconds")


if __name__ == "__main__":
    main()
