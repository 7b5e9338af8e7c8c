"""Cost and agreement of the project's drift check against Evidently run on the full batch.

Synthetic data, fixed seed: a reference of 5,000 rows (the sample the pipeline logs with a champion,
`mlflow.reference_rows`) and current batches of 100,000 and 1,000,000 rows with 15 features (12
numeric, 3 categorical) and a time column, under a battery of shifts. For each size and shift:

(a) the project: `detect_columns` + `decide_drift` on the full batch (the verdict), then
    `time_stratified_sample` + `evidently_report` on `DriftConfig.report_rows` rows and
    `snapshot.save_html` to a temporary file, as the drift flow does;
(b) Evidently on the full data: `evidently_report(reference, full_batch, schema, DriftConfig())`.

Each measured side runs in a fresh spawned process that first imports everything, builds the data
and warms Evidently up on a tiny report; its peak memory is the rise of the process's resident set
high-water mark (VmHWM, reset through /proc/self/clear_refs just before the call) over its resident
set at that point, so the transient peak of building the data is not counted. Where the reset is
not allowed, the ru_maxrss delta is used (and may undercount), and the output says which.

(c) the streamed verdict: the same batch cut into record batches of `STREAM_BATCH_ROWS` rows and
    summarised (`core.drift_stats.summarise_stream`) against the reference's summaries, as the drift
    check does for a batch of more than a million rows; its time is reported apart.

Agreement: the dataset verdict (Evidently's "Share of Drifted Columns" test failing, i.e. its
`DriftedColumnsCount` share >= drift_share, against the project's share >= share_threshold) must be
identical in every case, and the per-column verdicts (Evidently's `ValueDrift` score against its
threshold, from `snapshot.dict()`) must agree on at least 99% of columns overall. The streamed
verdicts are compared the same way; a streamed column marked borderline (its score within the
summary's error bound of the threshold) is counted apart, neither agreeing nor disagreeing. The script exits
non-zero when either fails or when the project's check of a 1M-row batch takes 10 s or more.

Usage: python benchmarks/drift.py [--sizes 100000,1000000] [--quick] [--full-shifts N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SEED = 20240611
REFERENCE_ROWS = 5_000  # MlflowConfig.reference_rows default
NUMERIC = [f"num_{i:02d}" for i in range(12)]
CATEGORICAL = ["cat_region", "cat_device", "cat_flag"]
TIME = "event_time"
TARGET = "target"  # not in the frames: the batches are unlabelled, like a drift check's
SHIFTS = {
    "none": "no shift",
    "mean": "mean +0.5 sd on 8 of 12 numeric columns",
    "variance": "sd x1.6 on 6 numeric columns",
    "category": "category shares moved on all 3 categorical columns",
    "single": "one column (num_03) mean +0.3 sd",
}
QUICK_SHIFTS = ("none", "mean")
# Shifts kept at the largest size when --full-shifts limits it (the ones whose verdicts differ most).
PRIORITY = ("mean", "single", "none", "variance", "category")
AGREEMENT_MIN = 0.99
LIMIT_1M_S = 10.0
CHILD_TIMEOUT_S = 900


# --------------------------------------------------------------------------- data


def _categories(rng, rows: int, values: list[str], shares: list[float]):
    import numpy as np

    return np.asarray(values, dtype=object)[rng.choice(len(values), size=rows, p=shares)]


REGIONS = ["north", "south", "east", "west"]
REGION_SHARES = [0.4, 0.3, 0.2, 0.1]
DEVICES = [f"device_{i:02d}" for i in range(12)]


def _device_shares(skew: float) -> list[float]:
    weights = [1.0 / (i + 1) ** skew for i in range(len(DEVICES))]
    return [w / sum(weights) for w in weights]


def make_frame(rows: int, seed: tuple[int, ...], shift: str = "none"):
    """One table of the synthetic source; `shift` moves the distributions of the current batch."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01").value
    span = 30 * 24 * 3600 * 10**9
    data = {TIME: pd.to_datetime(start + rng.integers(0, span, rows))}  # unsorted, like a real dump
    for i in range(8):
        data[NUMERIC[i]] = rng.normal(10.0 * i, 1.0 + 0.25 * i, rows)
    data[NUMERIC[8]] = rng.lognormal(3.0, 0.6, rows)
    data[NUMERIC[9]] = rng.uniform(0.0, 100.0, rows)
    data[NUMERIC[10]] = np.minimum(rng.poisson(1.2, rows), 3).astype("int64")  # 4 values: Evidently's JS
    values = rng.gamma(2.0, 2.0, rows)
    values[rng.random(rows) < 0.02] = np.nan  # some missing values
    data[NUMERIC[11]] = values
    category = shift == "category"
    data[CATEGORICAL[0]] = _categories(
        rng, rows, REGIONS, [0.2, 0.3, 0.2, 0.3] if category else REGION_SHARES
    )
    data[CATEGORICAL[1]] = _categories(rng, rows, DEVICES, _device_shares(0.3 if category else 1.0))
    data[CATEGORICAL[2]] = _categories(rng, rows, ["yes", "no"], [0.5, 0.5] if category else [0.7, 0.3])
    frame = pd.DataFrame(data)
    if shift == "mean":
        for i in range(8):
            frame[NUMERIC[i]] += 0.5 * (1.0 + 0.25 * i)
    elif shift == "variance":
        for i in range(6):
            column = NUMERIC[i]
            frame[column] = 10.0 * i + (frame[column] - 10.0 * i) * 1.6
    elif shift == "single":
        frame[NUMERIC[3]] += 0.3 * (1.0 + 0.25 * 3)
    return frame


def make_inputs(rows: int, shift: str):
    from core.validation import DataSchema

    schema = DataSchema(TARGET, list(NUMERIC), list(CATEGORICAL), TIME)
    reference = make_frame(REFERENCE_ROWS, (SEED, 0))
    current = make_frame(rows, (SEED, rows, list(SHIFTS).index(shift)), shift)
    return reference, current, schema


# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class PeakMemory:
    """Peak resident memory a block adds over the process's resident set when it starts."""

    def __enter__(self) -> PeakMemory:
        import gc

        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # reset VmHWM to the current resident set (Linux >= 4.0)
            self.method = "VmHWM"
            self.base = _status_kb("VmHWM") or 0
        except OSError:
            self.method = "ru_maxrss"
            self.base = _maxrss_kb()
        self.rss = _status_kb("VmRSS") or self.base
        return self

    def peak_mb(self) -> float:
        now = _status_kb("VmHWM") if self.method == "VmHWM" else _maxrss_kb()
        return max(0, (now or 0) - self.base) / 1024

    def __exit__(self, *exc) -> None:
        self.delta_mb = self.peak_mb()


# --------------------------------------------------------------------------- children


def _warm_up(schema) -> None:
    """Imports and first-call costs paid once per process, outside the measurement (both sides)."""
    from core.config import DriftConfig
    from core.drift import detect_columns, drift_verdict, evidently_report

    reference, current = make_frame(300, (SEED, 1)), make_frame(300, (SEED, 2), "mean")
    drift_verdict(detect_columns(reference, current, schema, DriftConfig()), DriftConfig(), None, [])
    snapshot = evidently_report(reference, current, schema, DriftConfig())
    snapshot.dict()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        snapshot.save_html(str(Path(tmp) / "warm.html"))


def _status(status) -> str:
    """A test status as its plain name ("FAIL", "SUCCESS"; `dict()` keeps the enum)."""
    return str(getattr(status, "value", status)).rsplit(".", 1)[-1]


def _evidently_verdicts(snapshot) -> dict:
    """Dataset share/verdict and per-column verdicts of an Evidently DataDriftPreset snapshot."""
    result: dict = {"columns": {}, "share": None, "dataset_test": None}
    content = snapshot.dict()
    for metric in content["metrics"]:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            result["share"] = float(metric["value"]["share"])
            result["count"] = int(metric["value"]["count"])
            result["drift_share"] = float(config["drift_share"])
        elif kind == "ValueDrift":
            score, threshold, method = float(metric["value"]), float(config["threshold"]), config["method"]
            # p-value tests (K-S, chi-square, Z, ...) drift below the threshold, distances at or above it
            drifted = score < threshold if "p_value" in method else score >= threshold
            result["columns"][config["column"]] = {
                "score": score,
                "threshold": threshold,
                "method": method,
                "drifted": drifted,
            }
    for test in content.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        kind = params.get("type", "").rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            result["dataset_test"] = _status(test["status"])
        elif kind == "ValueDrift" and params.get("column") in result["columns"]:
            result["columns"][params["column"]]["test"] = _status(test["status"])
    result["dataset_drift"] = result["share"] is not None and result["share"] >= result["drift_share"]
    return result


def run_project(rows: int, shift: str) -> dict:
    """(a) The project's check: verdict on the full batch, report on the time-stratified sample."""
    import tempfile

    from core.config import DriftConfig
    from core.drift import detect_columns, drift_verdict, evidently_report, time_stratified_sample

    reference, current, schema = make_inputs(rows, shift)
    _warm_up(schema)
    drift = DriftConfig()
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as memory:
        started = time.perf_counter()
        columns = detect_columns(reference, current, schema, drift)
        verdict = drift_verdict(columns, drift, None, [])
        verdict_s = time.perf_counter() - started
        verdict_mb = memory.peak_mb()
        sample = time_stratified_sample(current, TIME, drift.report_rows)
        snapshot = evidently_report(reference, sample, schema, drift)
        path = Path(tmp) / "drift.html"
        snapshot.save_html(str(path))
        total_s = time.perf_counter() - started
        html_mb = path.stat().st_size / 2**20
    streamed, streamed_s = streamed_columns(reference, current, schema, drift)
    return {
        "streamed": streamed,
        "streamed_s": streamed_s,
        "verdict_s": verdict_s,
        "report_s": total_s - verdict_s,
        "total_s": total_s,
        "verdict_mb": verdict_mb,
        "peak_mb": memory.delta_mb,
        "memory_method": memory.method,
        "base_mb": memory.rss / 1024,
        "html_mb": html_mb,
        "sample_rows": len(sample),
        "share": verdict.share_drifted,
        "dataset_drift": verdict.share_drifted >= drift.share_threshold,
        "detected": verdict.drift_detected,
        "columns": {c.column: {"score": c.score, "method": c.method, "drifted": c.drifted} for c in columns},
        "sample_report": _evidently_verdicts(snapshot),
    }


def streamed_columns(reference, current, schema, drift) -> tuple[dict, float]:
    """(c) Per-column verdicts from summaries of the batch in record batches, and their time."""
    from core.drift import detect_columns_summarised, feature_kinds
    from core.drift_stats import summarise, summarise_stream
    from core.tables import STREAM_BATCH_ROWS

    summaries = summarise(reference, dict(feature_kinds(schema)))
    started = time.perf_counter()
    chunks = (current.iloc[i : i + STREAM_BATCH_ROWS] for i in range(0, len(current), STREAM_BATCH_ROWS))
    streamed = summarise_stream(chunks, lambda chunk: chunk, summaries, 1000, SEED)
    columns = detect_columns_summarised(summaries, streamed.summaries, schema, drift)
    seconds = time.perf_counter() - started
    return {
        c.column: {"score": c.score, "drifted": c.drifted, "borderline": c.borderline} for c in columns
    }, seconds


def run_evidently(rows: int, shift: str) -> dict:
    """(b) Evidently's DataDriftPreset on the full batch."""
    from core.config import DriftConfig
    from core.drift import evidently_report

    reference, current, schema = make_inputs(rows, shift)
    _warm_up(schema)
    with PeakMemory() as memory:
        started = time.perf_counter()
        snapshot = evidently_report(reference, current, schema, DriftConfig())
        seconds = time.perf_counter() - started
    return {
        "total_s": seconds,
        "peak_mb": memory.delta_mb,
        "memory_method": memory.method,
        "base_mb": memory.rss / 1024,
        **_evidently_verdicts(snapshot),
    }


def _child(name: str, rows: int, shift: str, conn) -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        conn.send(
            {"ok": True, **{"run_project": run_project, "run_evidently": run_evidently}[name](rows, shift)}
        )
    except BaseException as error:  # reported by the parent
        import traceback

        conn.send({"ok": False, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()})
    finally:
        conn.close()


def in_fresh_process(name: str, rows: int, shift: str) -> dict:
    """Run one measured side in a new interpreter (spawn) and return what it measured."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(name, rows, shift, send))
    process.start()
    send.close()
    result = None
    if receive.poll(CHILD_TIMEOUT_S):
        try:
            result = receive.recv()
        except EOFError:
            result = None
    process.join(30)
    if process.is_alive():
        process.kill()
        process.join()
    if result is None:
        result = {"ok": False, "error": f"child died (exit code {process.exitcode}) or timed out"}
    if not result["ok"]:
        raise RuntimeError(f"{name}({rows}, {shift}) failed: {result['error']}\n{result.get('trace', '')}")
    return result


# --------------------------------------------------------------------------- report


def _yes(flag: bool) -> str:
    return "DRIFT" if flag else "no drift"


def compare(project: dict, evidently: dict) -> dict:
    columns = list(project["columns"])
    disagree = [c for c in columns if project["columns"][c]["drifted"] != evidently["columns"][c]["drifted"]]
    score_gap = max(abs(project["columns"][c]["score"] - evidently["columns"][c]["score"]) for c in columns)
    test_mismatch = [
        c
        for c in columns
        if evidently["columns"][c].get("test")
        and (evidently["columns"][c]["test"] == "FAIL") != evidently["columns"][c]["drifted"]
    ]
    streamed = project["streamed"]
    borderline = [c for c in columns if streamed[c]["borderline"]]
    streamed_disagree = [
        c
        for c in columns
        if c not in borderline and streamed[c]["drifted"] != evidently["columns"][c]["drifted"]
    ]
    return {
        "streamed_agree": len(columns) - len(borderline) - len(streamed_disagree),
        "streamed_borderline": borderline,
        "streamed_disagree": streamed_disagree,
        "streamed_gap": max(abs(streamed[c]["score"] - evidently["columns"][c]["score"]) for c in columns),
        "agree": len(columns) - len(disagree),
        "total": len(columns),
        "disagree": disagree,
        "score_gap": score_gap,
        "dataset_same": project["dataset_drift"] == evidently["dataset_drift"],
        "dataset_test_consistent": (evidently["dataset_test"] == "FAIL") == evidently["dataset_drift"],
        "test_mismatch": test_mismatch,
    }


def print_case(rows: int, shift: str, project: dict, evidently: dict, agreement: dict) -> None:
    print(f"\n== {rows:,} rows | shift: {shift} ({SHIFTS[shift]}) ==")
    print(f"  {'':52} {'wall s':>8} {'peak MB':>9} {'RSS MB':>8}")
    lines = [
        (
            "project verdict: detect_columns+decide_drift, full",
            project["verdict_s"],
            project["verdict_mb"],
            project["base_mb"],
        ),
        (
            f"project report: sample {project['sample_rows']:,} + Report + save_html",
            project["report_s"],
            None,
            None,
        ),
        ("project total (a)", project["total_s"], project["peak_mb"], project["base_mb"]),
        ("evidently full data (b)", evidently["total_s"], evidently["peak_mb"], evidently["base_mb"]),
    ]
    for label, seconds, megabytes, base in lines:
        memory = f"{megabytes:9.0f} {base + megabytes:8.0f}" if megabytes is not None else ""
        print(f"  {label:52.52} {seconds:8.2f} {memory}")
    print(
        f"  {'ratio project/evidently':52} {project['total_s'] / evidently['total_s']:7.3f}x "
        f"{project['peak_mb'] / max(evidently['peak_mb'], 1e-9):8.3f}x"
    )
    n = agreement["total"]
    print(
        f"  dataset verdict: project {_yes(project['dataset_drift'])} "
        f"(share {project['share']:.0%}, {round(project['share'] * n)}/{n}) | evidently full "
        f"{_yes(evidently['dataset_drift'])} (share {evidently['share']:.0%}, test "
        f"{evidently['dataset_test']}) -> {'SAME' if agreement['dataset_same'] else 'DIFFERENT'}"
    )
    sample = project["sample_report"]
    print(f"  (HTML report on the sample says: {_yes(sample['dataset_drift'])}, share {sample['share']:.0%})")
    drifted = [c for c, v in project["columns"].items() if v["drifted"]]
    print(
        f"  per-column: {agreement['agree']}/{n} agree, max |score gap| {agreement['score_gap']:.2e}; "
        f"drifted (project): {', '.join(drifted) or '-'}"
        + (f"; DISAGREE on: {', '.join(agreement['disagree'])}" if agreement["disagree"] else "")
    )
    near = agreement["streamed_borderline"]
    print(
        f"  streamed (record batches of summaries, {project['streamed_s']:.2f} s): "
        f"{agreement['streamed_agree']}/{n} agree, {len(agreement['streamed_borderline'])} borderline"
        f"{' (' + ', '.join(near) + ')' if near else ''}, "
        f"max |score gap| {agreement['streamed_gap']:.1e}"
        + (
            f"; DISAGREE on: {', '.join(agreement['streamed_disagree'])}"
            if agreement["streamed_disagree"]
            else ""
        )
    )
    if agreement["test_mismatch"] or not agreement["dataset_test_consistent"]:
        print(
            f"  note: Evidently test status differs from score vs threshold on {agreement['test_mismatch']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated batch sizes")
    parser.add_argument("--quick", action="store_true", help=f"100k rows, shifts {', '.join(QUICK_SHIFTS)}")
    parser.add_argument(
        "--full-shifts",
        type=int,
        default=len(SHIFTS),
        help="at the largest size (>= 1M) run only this many shifts (Evidently on 1M rows is slow)",
    )
    args = parser.parse_args()
    sizes = [100_000] if args.quick else sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    shifts = list(QUICK_SHIFTS) if args.quick else list(SHIFTS)
    plan = []
    for rows in sizes:
        chosen = shifts
        if rows == max(sizes) and rows >= 1_000_000 and args.full_shifts < len(shifts):
            chosen = [s for s in PRIORITY if s in shifts][: args.full_shifts]
            chosen = [s for s in shifts if s in chosen]
        plan += [(rows, shift) for shift in chosen]

    print(
        f"drift benchmark: reference {REFERENCE_ROWS:,} rows, {len(NUMERIC)} numeric + {len(CATEGORICAL)} "
        f"categorical features + time column, seed {SEED}; {os.cpu_count()} CPUs, "
        f"python {sys.version.split()[0]}"
    )
    skipped = [(r, s) for r in sizes for s in shifts if (r, s) not in plan]
    if skipped:
        print(f"skipped to keep the run short: {', '.join(f'{r:,}/{s}' for r, s in skipped)}")
    print("each side runs in a fresh spawned process after imports, data creation and a tiny warm-up report")

    started = time.perf_counter()
    cases = []
    for rows, shift in plan:
        project = in_fresh_process("run_project", rows, shift)
        evidently = in_fresh_process("run_evidently", rows, shift)
        agreement = compare(project, evidently)
        print_case(rows, shift, project, evidently, agreement)
        sys.stdout.flush()
        cases.append((rows, shift, project, evidently, agreement))

    methods = {c[2]["memory_method"] for c in cases} | {c[3]["memory_method"] for c in cases}
    print(
        f"\npeak MB: rise of {'/'.join(sorted(methods))} over the resident set before the call (after "
        "imports, data and warm-up); RSS MB: the process's absolute peak resident set"
    )
    print(
        f"\n{'rows':>10} {'shift':9} {'proj s':>7} {'verdict s':>9} {'evid s':>7} {'time x':>7} "
        f"{'proj MB':>8} {'evid MB':>8} {'mem x':>6} {'dataset p/e':>18} {'cols':>6}"
    )
    for rows, shift, project, evidently, agreement in cases:
        print(
            f"{rows:>10,} {shift:9} {project['total_s']:7.2f} {project['verdict_s']:9.2f} "
            f"{evidently['total_s']:7.2f} {project['total_s'] / evidently['total_s']:7.3f} "
            f"{project['peak_mb']:8.0f} {evidently['peak_mb']:8.0f} "
            f"{project['peak_mb'] / max(evidently['peak_mb'], 1e-9):6.3f} "
            f"{_yes(project['dataset_drift']) + '/' + _yes(evidently['dataset_drift']):>18} "
            f"{agreement['agree']:>3}/{agreement['total']}"
        )

    agreed = sum(c[4]["agree"] for c in cases)
    total = sum(c[4]["total"] for c in cases)
    share = agreed / total if total else 0.0
    streamed_agreed = sum(c[4]["streamed_agree"] for c in cases)
    streamed_borderline = sum(len(c[4]["streamed_borderline"]) for c in cases)
    streamed_bad = sum(len(c[4]["streamed_disagree"]) for c in cases)
    dataset_bad = [f"{r:,}/{s}" for r, s, _, _, a in cases if not a["dataset_same"]]
    slow = [
        f"{r:,}/{s} {p['total_s']:.1f}s"
        for r, s, p, _, _ in cases
        if r >= 1_000_000 and p["total_s"] >= LIMIT_1M_S
    ]
    large = [p["total_s"] for r, _, p, _, _ in cases if r >= 1_000_000]
    failures = []
    if dataset_bad:
        failures.append(f"dataset verdict differs in {', '.join(dataset_bad)}")
    if share < AGREEMENT_MIN:
        failures.append(f"per-column agreement {share:.1%} < {AGREEMENT_MIN:.0%}")
    if streamed_bad:
        failures.append(f"streamed verdicts disagree on {streamed_bad} columns")
    if slow:
        failures.append(f"1M-row project check >= {LIMIT_1M_S:.0f} s: {', '.join(slow)}")
    print(
        f"\nSUMMARY: {len(cases)} cases in {time.perf_counter() - started:.0f} s; dataset verdicts "
        f"identical in {len(cases) - len(dataset_bad)}/{len(cases)}; per-column agreement {agreed}/{total} "
        f"({share:.1%}, need >= {AGREEMENT_MIN:.0%}); streamed: {streamed_agreed}/{total} agree, "
        f"{streamed_borderline} borderline, {streamed_bad} disagree; "
        + (
            f"slowest 1M project check {max(large):.2f} s (limit {LIMIT_1M_S:.0f} s)"
            if large
            else "no 1M-row case run"
        )
        + f" -> {'FAIL: ' + '; '.join(failures) if failures else 'PASS'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
