"""Markdown tables and paragraphs of benchmarks/README.md, one renderer per kind of results file.

Each renderer takes the JSON a benchmark wrote (``benchmarks/results/NAME.json``) and returns the
lines of its section; ``benchmarks/report.py`` puts the page together. Only the goals and what a
results file cannot say about itself (a dataset's name, how an artifact was trained) are written
here; every measured figure is read from the file.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from model.evaluate import PUBLISHED

Lines = list[str]

# Goals the benchmarks are read against (targets, not measurements).
GOAL_EVENTS_PER_S, GOAL_TIMES_BASELINE, GOAL_P99_MS, GOAL_FRESHNESS_S = 5000, 5, 50, 120
# What the evaluation files do not say themselves: the file behind a dataset hash, and how the
# artifact of each version was trained (the commands are in docs/model.md).
DATASETS = {"226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8":
            "Beauty (S3-Rec files)",
            "f480b7a7403852342ffd8f9809bb30697dd669be31813d0e204b698fec86ef49":
            "Beauty (BERT4Rec files)"}
TRAINED = {"20261122T152642Z-784fb134": "full CE, users grouped by length",
           "20261123T054843Z-99964a2e": "full CE, shuffled users",
           "20261122T154440Z-4f26fafa": "sampled softmax, users grouped by length"}
STAGES = {"gather": "from the oldest event's Kafka timestamp to the batch's start",
          "prepare": "decode, apply, scorer input, on the event loop",
          "queue": "behind the previous batch", "score": "the scorer call",
          "write": "encode and produce the outputs",
          "settle": "until the broker acknowledged the batch's writes"}


def ms(x: float | None) -> str:
    """A duration in ms as the tables print it."""
    return "—" if x is None else f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def num(x: float) -> str:
    """A count or a rate, with thousands separators."""
    return f"{x:,.0f}"


def prose(*parts: str) -> Lines:
    """One paragraph, wrapped, then a blank line."""
    text = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), "".join(parts))
    return [textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False,
                          subsequent_indent="  " if text.startswith("- ") else "")
            .replace("\0", " "), ""]


def table(head: list[str], rows: list[list[Any]]) -> Lines:
    """A Markdown table, then a blank line."""
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""])


def pcts(run: dict[str, Any]) -> str:
    """p50 / p95 / p99 of a latency run."""
    return " / ".join(ms(run.get(f"p{q}_ms")) for q in (50, 95, 99))


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def each_p99(run: dict[str, Any]) -> str:
    """The p99 of each run a median was taken over (or the run's own)."""
    return ", ".join(ms(e["p99_ms"]) for e in run.get("each", [])) or ms(run["p99_ms"])


def pipeline(d: dict[str, Any]) -> Lines:
    w, tput = d["worker"], d["worker"]["throughput"]
    ratio, faust = d["ratio_throughput"], d["faust_ceiling"]["events_per_s"]
    out = prose(
        f"`streamrec bench pipeline` (`benchmarks/bench_pipeline.py`; {d['machine']}): Amazon "
        f"Beauty events with users interleaved, {num(d['catalogue_items'])} items, one worker on "
        "real local brokers. The naive baseline (`benchmarks/naive_baseline.py`) consumes one "
        "event at a time, scores that user alone with torch eager and produces the result. "
        "*Faust alone* (`benchmarks/faust_ceiling.py`) is a Faust agent that takes the same "
        "events in micro-batches through Faust's own stream and does nothing else. The load "
        "generator and the subscriber that measures latency share the machine; latency runs "
        "from an event's Kafka timestamp to the moment its recommendation reaches the subscriber.")
    out += table(["sustained throughput", f"events/s (backlog of {num(tput['events'])})"], [
        ["streamrec worker", f"**{num(tput['events_per_s'])}** (mean batch "
         f"{tput['mean_batch']:.1f}, peak RSS {tput['peak_rss_mb']:.0f} MB)"],
        ["Faust alone", num(faust)], ["naive baseline", num(d["baseline"]["throughput"][
            "events_per_s"])]])
    out += prose(
        f"The worker is {ratio:.1f}× the baseline (goal {GOAL_TIMES_BASELINE}×: "
        f"{verdict(ratio >= GOAL_TIMES_BASELINE)}) and {tput['events_per_s'] / faust:.2f}× Faust "
        f"alone; {num(tput['events_per_s'])} events/s against a goal of "
        f"{num(GOAL_EVENTS_PER_S)}: {verdict(tput['events_per_s'] >= GOAL_EVENTS_PER_S)}.")
    p99 = w["latency"]["p99_ms"]
    return out + latency_table(d) + prose(
        f"The p99 at {num(d['rate'])} events/s, median of the runs: {ms(p99)} ms against a goal "
        f"of {GOAL_P99_MS} ms: {verdict(p99 <= GOAL_P99_MS)}. *Within 50 ms* is the share of "
        "recommendations the worker wrote within 50 ms of their event's Kafka timestamp (its own "
        "histogram, read before and after the measured events). The benchmark discards its "
        "first run on freshly started brokers, which is slower whichever part comes first; it "
        "is kept in the JSON and shown last.") + stage_table(d) + [
        "![Throughput and latency](results/pipeline.png)", ""]


def latency_table(d: dict[str, Any]) -> Lines:
    w, rate, base = d["worker"], num(d["rate"]), d["baseline"]["latency"]
    rows = [(f"worker at {num(float(r))} events/s", run) for r, run in w["latency_by_rate"].items()]
    rows.append((f"worker at {rate} events/s", w["latency"]))
    if own := w.get("latency_own_cores"):
        rows.append((f"… the worker on CPU {own['worker_cpus']}, brokers, load and subscriber "
                     f"on {own['others_cpus']} (`benchmarks/cores.py`)", own))
    rows += [("… events fetched by Faust's own client (`STREAMREC_EVENTS_READER=faust`)",
              w["latency_faust_fetch"]),
             (f"floor: a bare librdkafka loop that copies each event at once "
              f"(`benchmarks/transit_floor.py`), {rate} events/s", d["floor"]),
             (f"naive baseline at {rate} events/s ({num(base['recommendations'])} of "
              f"{num(base['events'])} answered in its time budget)", base),
             (f"first run on freshly started brokers, {rate} events/s (discarded)",
              d["warm_up_run"])]
    body = []
    for name, run in rows:
        each = run.get("each")
        written = run.get("worker_written_within_50_ms_pct",
                          run.get("worker_written", {}).get("within_50_ms_pct"))
        body.append([name, pcts(run), ms(run.get("max_ms")),
                     "—" if written is None else f"{written}%",
                     f"median of {len(each)}; p99 of each: {each_p99(run)}" if each else "1"])
    return table(["event → recommendation", "p50 / p95 / p99 ms", "max ms", "within 50 ms",
                  "runs"], body)


def stage_table(d: dict[str, Any]) -> Lines:
    w = d["worker"]
    runs = [(f"{num(float(r))}/s", run) for r, run in w["latency_by_rate"].items()]
    runs += [(f"{num(d['rate'])}/s run {i}", run) for i, run in
             enumerate(w["latency"].get("each", []), 1)]
    runs = [(name, run["batch_stages"]) for name, run in runs if "batch_stages" in run]
    body = [[f"`{s}`: {what}"] + [f"{ms(st[s]['p50_ms'])} / {ms(st[s]['p99_ms'])}"
                                  for _, st in runs] for s, what in STAGES.items()]
    return prose("Where a batch's time goes (`streamrec_batch_stage_seconds`), p50 / p99 ms per "
                 "batch:") + table(["stage"] + [name for name, _ in runs], body) if runs else []


def failover(d: dict[str, Any]) -> Lines:
    goals, s, o = d["goals"], d["summary"], d["outage"]
    kill, pause = s["kill_to_first_recommendation_s"], s["survivor_longest_pause_s"]
    out = prose(
        f"`streamrec bench failover` (`benchmarks/bench_failover.py`; {d['machine']}): two "
        f"workers on a cluster of the benchmark's own, {num(d['rate_events_per_s'])} events/s "
        f"over {d['partitions']} partitions. *kill*: one worker is killed with `kill -9`; "
        "*restart*: it is started again at once on the same disk. *now*: the worker's default "
        "group settings; *before*: a 60-s session, a 3-s heartbeat and no static membership.")
    out += table(["settings", "scenario", "kill → first recommendation on its partitions",
                  "survivor's longest pause", "users whose last event got a recommendation"],
                 [[r["settings"], r["scenario"], f"{r['max_kill_to_first_recommendation_s']} s",
                   f"{r['survivor_longest_pause_s']} s",
                   f"{r['users_whose_last_event_was_recommended']} of {r['users']}"]
                  for r in d["runs"]])
    return out + prose(
        f"A {o['outage_s']:.0f}-s broker outage under one worker: {o['worker_log_lines']} log "
        f"lines (goal at most {goals['log_lines_per_30s_outage']}), the worker "
        f"{'alive' if o['worker_alive'] else 'dead'} afterwards, the last events of "
        f"{o['users_whose_last_event_was_recommended']} of {o['users']} users recommended. "
        f"Kill → first recommendation {kill} s (goal {goals['kill_to_first_recommendation_s']:g}"
        f" s: {verdict(kill <= goals['kill_to_first_recommendation_s'])}); survivor's longest "
        f"pause {pause} s (goal {goals['survivor_longest_pause_s']:g} s: "
        f"{verdict(pause <= goals['survivor_longest_pause_s'])}).")


def engine_name(result: dict[str, Any]) -> str:
    if result["engine"] == "ort":
        return f"ONNX Runtime ({result['provider'].removesuffix('ExecutionProvider')})"
    return result["provider"]


def scorer(stem: str, d: dict[str, Any]) -> Lines:
    m, batches = d["machine"], list(d["results"][0]["batches"])
    engines = list(dict.fromkeys(engine_name(r) for r in d["results"]))
    by = {(engine_name(r), r["n_items"]): r for r in d["results"]}
    out = prose(f"`{stem}.json`: top-{d['k']}, histories of {d['history']} items, medians of "
                f"{d['repeats']} calls, {m['threads']} threads on {m['cores']} cores"
                + (f", GPU {m['gpu']}" if m.get("gpu") else "")
                + f"; Python {m['python']}; load average {m['load_average_before'][0]:.1f} "
                f"before, {m['load_average_after'][0]:.1f} after.")
    head = ["items"] + [f"{e}: batch {' / '.join(batches)} ms" for e in engines]
    head += [f"torch ÷ ONNX Runtime at {batches[-1]}"] if len(engines) == 2 else []
    body = []
    for n in sorted({r["n_items"] for r in d["results"]}):
        runs = [by.get((e, n)) for e in engines]
        row = [num(n)] + [" / ".join(ms(r["batches"][b]["median_ms"]) for b in batches)
                          if r else "—" for r in runs]
        if len(engines) == 2:
            first, second = (r["batches"][batches[-1]]["median_ms"] if r else None for r in runs)
            row.append(f"{second / first:.1f}×" if first and second else "—")
        body.append(row + [" / ".join(num(r["peak_rss_mb"]) if r else "—" for r in runs)])
    return out + table(head + ["peak RSS MB"], body)


def devices(stem: str, d: dict[str, Any]) -> Lines:
    a, lat, m = d["agreement"], d["median_latency_ms"], d["machine"]
    batches = list(next(iter(lat.values())))
    return prose(
        f"`{stem}.json` ({m['gpu']}, {m['cores']} cores, {m['onnxruntime']}), "
        f"{d['model']['name']} ({num(d['model']['n_items'])} items), top-{d['k']}: the same "
        f"item sets for {a['sets']:.1%} of the users and the same order at {a['positions']:.1%} "
        f"of the positions; the largest score gap on a shared item {a['max_score_gap']:.1e}. "
        f"Measured with: {d['measured_with']}.") + table(
        ["batch (users)"] + [f"{dev} ms" for dev in lat],
        [[b] + [ms(lat[dev].get(b)) for dev in lat] for b in batches])


def replay_live(d: dict[str, Any]) -> Lines:
    cases = {"alone": "no replay", "capped_5k": "a replay capped at 5,000/s",
             "capped_default_20k": "a replay at the default cap, 20,000/s",
             "uncapped": "an uncapped replay (`--rate 0`)"}
    return prose(
        f"`streamrec bench replay_live` (`benchmarks/bench_replay_live.py`): a worker serves "
        f"{num(d['live_rate'])} events/s while {num(d['backlog'])} events are replayed between "
        "two other topics of the same cluster.") + table(
        ["beside the live worker", "live p50 / p95 / p99 ms", "p99 ÷ alone",
         "replay still running at the end"],
        [[what, pcts(d[k]), d.get(f"{k}_p99_over_alone", 1.0),
          "yes" if d[k]["replay_still_running_at_end"] else "no"]
         for k, what in cases.items() if k in d])


def loop(d: dict[str, Any]) -> Lines:
    f, c, rank = d["freshness_s"], d["config"], d["new_item_rank"]
    return prose(
        f"`streamrec bench loop` (`benchmarks/bench_loop.py`; {d['machine']['cpus']} cores): "
        f"live samples at {c['rate']}/s, a never-seen item every {c['new_every']} s, training "
        f"windows of {c['window_seconds']} s. An item's freshness is the time from its first "
        "sample to the moment the private side's `current` model knows it.") + table(
        ["new items", "releases", "freshness median / p95 / max",
         "window (train, compare, export) median / p95", "in the top 100 / 20 when first known"],
        [[f["items"], d["releases"], f"{f['median']} / {f['p95']} / {f['max']} s",
          f"{d['window_s']['median']} / {d['window_s']['p95']} s",
          f"{rank['in_top100_share']:.0%} / {rank['in_top20_share']:.0%}"]]) + prose(
        f"Goal: a median under {GOAL_FRESHNESS_S} s: {verdict(f['median'] < GOAL_FRESHNESS_S)}; "
        f"items never known: {len(f['never_known'])}.")


def swap(d: dict[str, Any]) -> Lines:
    return prose(
        "`streamrec bench swap` (`benchmarks/bench_swap.py`): a worker under a steady stream "
        f"switches models halfway (`POST /model`); {num(d['answered'])} of {num(d['events'])} "
        "events got their recommendation.") + table(
        ["events sent", "events", "p50 / p95 / p99 ms"],
        [[what, num(d[k]["n"]), pcts(d[k])] for k, what in
         (("before", "before the swap"), ("during", "within 1 s of it"), ("after", "after it"))])


def quality(runs: list[dict[str, Any]]) -> Lines:
    """One table per evaluated file: ours, popularity and the published figures for it."""
    sha = runs[0]["dataset_sha256"]
    rows = [["popularity (ours)", "FULL", *hr_ndcg(runs[0]["popularity"]["FULL"])]]
    rows += [[f"{who}, published", proto, f"{hr:.4f}", f"{ndcg:.4f}"]
             for who, proto, hr, ndcg in PUBLISHED.get(sha, [])]
    seen = set()
    for d in runs:
        for proto, m in d["model"].items():
            if (d["artifact"], proto) not in seen:
                seen.add((d["artifact"], proto))
                label = TRAINED.get(d["artifact"], f"artifact {d['artifact']}")
                rows.append([f"**streamrec SASRec ({label})**", proto, *hr_ndcg(m)])
    return prose(f"{DATASETS.get(sha, Path(runs[0]['dataset']).name)}, "
                 f"{num(runs[0]['users'])} test users:") + table(
        ["model", "protocol", "HR@10", "NDCG@10"], sorted(rows, key=lambda r: r[1] != "FULL"))


def hr_ndcg(m: dict[str, float]) -> list[str]:
    return [f"{m['HR@10']:.4f}", f"{m['NDCG@10']:.4f}"]
