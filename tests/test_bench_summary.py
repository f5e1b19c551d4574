"""scripts/bench_summary.py: medians, spreads and per-round ratios from the workers' reports, and the README
block drawn from a results file (golden values worked out by hand; nothing is timed here)."""

from __future__ import annotations

import pytest
from script_modules import load_script

summary = load_script("bench_summary")


def worker(epochs, **extra):
    return {"epochs_s": epochs, **extra}


def gpunn_worker(epochs, gemms, peak):
    return worker(epochs, own_gemms_epoch_s=gemms, sgemm_peak_gflops=peak, gemm_gflop_per_epoch=10.0)


ROUNDS = [
    # round 1: gpunn 1.0 (median of 0.9, 1.0, 1.4), torch 2.0; GEMMs alone 0.5; peak 100 GFLOP/s -> 0.1 s
    {
        "gpunn numpy": gpunn_worker([0.9, 1.0, 1.4], [0.5, 0.5, 0.6], 100.0),
        "pytorch eager cpu": worker([2.0, 2.2, 1.8]),
    },
    # round 2, a slow spell for both: gpunn 3.0, torch 4.0; GEMMs 2.0; peak 50 -> 0.2 s
    {
        "pytorch eager cpu": worker([4.0, 4.0, 4.0]),
        "gpunn numpy": gpunn_worker([3.0, 3.0, 3.0], [2.0, 2.0, 2.0], 50.0),
    },
    # round 3: torch did not run (skipped): the ratio has only rounds 1 and 2
    {"gpunn numpy": gpunn_worker([1.2, 1.2, 1.2], [1.0, 1.0, 1.0], 100.0)},
]


def test_rows_are_the_spread_of_every_timed_epoch():
    rows = summary.summarise(ROUNDS)["rows"]
    gpunn = rows["gpunn numpy"]["epoch_s"]
    # nine epochs 0.9 1.0 1.2 1.2 1.2 1.4 3 3 3: median 1.2, quartiles 1.2 and 3.0 (numpy's linear rule)
    assert gpunn == {"median": 1.2, "min": 0.9, "max": 3.0, "q1": 1.2, "q3": 3.0}
    assert rows["gpunn numpy"]["round_medians_s"] == [1.0, 3.0, 1.2]
    assert rows["pytorch eager cpu"]["round_medians_s"] == [2.0, 4.0, None]
    assert rows["pytorch eager cpu"]["epoch_s"]["median"] == pytest.approx(3.1)  # of 1.8 2 2.2 4 4 4


def test_ratios_are_taken_per_round_then_summarised():
    ratio = summary.summarise(ROUNDS)["ratios"]["gpunn numpy / pytorch eager cpu"]
    assert ratio["per_round"] == [0.5, 0.75]  # 1.0/2.0 and 3.0/4.0; round 3 has no torch
    assert ratio["median"] == pytest.approx(0.625) and (ratio["min"], ratio["max"]) == (0.5, 0.75)
    # not the ratio of the overall medians (1.2 / 3.0 = 0.4): a slow round moves both sides of its ratio
    assert ratio["median"] != pytest.approx(1.2 / 3.0)


def test_roofline_compares_gpunn_with_its_own_gemms_and_the_peak_in_the_same_worker():
    roof = summary.summarise(ROUNDS)["roofline"]
    assert roof["gpunn numpy / own gemms"]["per_round"] == pytest.approx([2.0, 1.5, 1.2])
    # 10 GFLOP at 100, 50, 100 GFLOP/s: 0.1, 0.2, 0.1 s
    assert roof["sgemm_peak_epoch_s"]["median"] == pytest.approx(0.1)
    assert roof["gpunn numpy / sgemm peak"]["per_round"] == pytest.approx([10.0, 15.0, 12.0])


def result_file(rows_from=ROUNDS, gpu=False):
    rounds = [dict(r) for r in rows_from]
    if gpu:
        rounds[0]["gpunn cuda"] = worker([0.25, 0.25, 0.25])
    return {
        "date": "2026-12-03",
        "machine": {"processor": "Test CPU", "cpu_count": 2, "platform": "Linux"},
        "setup": {
            "command": "python scripts/bench.py",
            "rounds": 3,
            "epochs": 3,
            "samples_per_epoch": 60000,
            "wall_s": 100.0,
        },
        "load_average_before": [0.5, 0, 0],
        "load_average_after": [1.5, 0, 0],
        "versions": {"numpy": "2.4.6"},
        "blas": [{"internal_api": "openblas", "version": "0.3.31", "num_threads": 2}],
        **summary.summarise(rounds),
    }


def table_row(text: str, start: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {start}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_table_shows_the_file_numbers_and_no_gpu_until_measured():
    text = summary.markdown(result_file(), "benchmarks/results/bench-x.json")
    assert table_row(text, "gpunn: the `train_step`")[1:] == [
        "1.200 (0.900-3.000)",
        "1.00",
        summary.NOT_MEASURED_GPU,
    ]
    assert table_row(text, "PyTorch eager")[1:] == [
        "3.100 (1.800-4.000)",
        "0.62 (0.50-0.75)",
        summary.NOT_MEASURED_GPU,
    ]
    assert table_row(text, "gpunn's own GEMMs")[2] == "1.50 (1.20-2.00)"
    assert table_row(text, "roofline")[2] == "12.00 (10.00-15.00)"
    assert "`benchmarks/results/bench-x.json`" in text and "3 rounds x 3 timed epochs" in text
    assert "Load average (1 min) 0.50 before, 1.50 after" in text
    assert not any(line.startswith("| JAX") for line in text.splitlines())  # no row without its data


def test_markdown_fills_the_gpu_column_from_cuda_rows():
    text = summary.markdown(result_file(gpu=True), "f.json")
    assert table_row(text, "gpunn: the `train_step`")[3] == "0.250 (0.250-0.250)"
    assert table_row(text, "PyTorch eager")[3] == "not installed"  # a GPU was there, PyTorch's row was not


def test_targets_are_judged_on_every_rounds_ratio():
    lines = summary.target_lines(result_file())
    # per-round ratios 0.50-0.75 against 0.5: the median misses it, one round does not
    assert (
        "- gpunn numpy / PyTorch eager: 0.62 (target <= 0.5): undecided: the rounds' ratios (0.50-0.75) "
        "lie on both sides of it." in lines
    )
    assert "- gpunn numpy / JAX jit: not measured (target <= 0.8)." in lines
    faster = [{**r, "pytorch eager cpu": worker([10.0, 10.0, 10.0])} for r in ROUNDS]
    assert "- gpunn numpy / PyTorch eager: 0.12 (target <= 0.5): met in every round." in summary.target_lines(
        result_file(faster)
    )
    slower = [{**r, "pytorch eager cpu": worker([1.0, 1.0, 1.0])} for r in ROUNDS]
    assert summary.target_lines(result_file(slower))[0].endswith("(target <= 0.5): not met in any round.")


def test_a_target_is_met_only_when_every_round_met_it():
    assert summary.target_verdict({"median": 0.7, "min": 0.6, "max": 0.8}, 0.8) == "met in every round"
    assert summary.target_verdict({"median": 0.7, "min": 0.6, "max": 0.81}, 0.8).startswith("undecided")
    assert summary.target_verdict({"median": 0.9, "min": 0.8, "max": 1.0}, 0.8).startswith("undecided")
    assert summary.target_verdict({"median": 0.9, "min": 0.81, "max": 1.0}, 0.8) == "not met in any round"


def test_cpu_pressure_is_summarised_from_the_workers_that_recorded_it():
    result = result_file()
    result["rounds"] = [
        {"a": {"cpu_pressure_before": 10.0}, "b": {"cpu_pressure_before": 90.0}},
        {"a": {"cpu_pressure_before": 50.0}, "b": {}},  # a worker without /proc/pressure
    ]
    assert "a task waited for a CPU, machine-wide) 50% median, 10-90%" in summary.pressure_text(result)
    assert summary.pressure_text({"rounds": [{"a": {}}]}) == ""


def test_a_run_stopped_early_says_how_many_rounds_it_finished():
    result = {**result_file(), "rounds": [{}, {}], "complete": False}
    assert summary.rounds_text(result) == "2 rounds (stopped before the planned 3 ended)"
    assert summary.rounds_text({**result, "rounds": [{}, {}, {}], "complete": True}) == "3 rounds"


def test_targets_are_not_judged_on_a_busy_machine():
    result = result_file()
    result["rounds"] = [{"gpunn numpy": {"cpu_pressure_before": 60.0}, "b": {"cpu_pressure_before": 95.0}}]
    lines = summary.target_lines(result)
    assert "- gpunn numpy / PyTorch eager: 0.62 (target <= 0.5): not judged, the machine was busy" in lines[0]
    assert "(median CPU pressure 78% > 10%)" in lines[0]
    result["rounds"] = [{"gpunn numpy": {"cpu_pressure_before": 2.0}}]
    assert summary.target_lines(result)[0].endswith("lie on both sides of it.")
