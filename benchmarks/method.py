"""The measuring method every benchmark shares: interleaved sides, medians, the machine's load.

  sides = {"rewardjax": run_ours, "trl": run_theirs}     # each call → seconds (one run)
  samples = interleave(sides, repeats=3)                 # A, B, A, B, A, B
  line = report("grpo_step", samples, ratio=("trl", "rewardjax"), start=start_load)

Timings on a shared CPU measure the load as much as the code: a side run
while another job holds the cores is slowed, and torch's threads suffer far
more than XLA's when preempted. So the sides are run in turn (drifting load
hits both alike), each figure is the median of its repeats with its spread,
and the load average and CPU count are recorded at the start and the end; a
run that started on a loaded machine says so (`"loaded": true`) and its
ratio is not to be reported as a result. (The end's load average includes
the benchmark's own threads; it is recorded, not judged.)
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def machine_load() -> dict[str, float | int | str]:
    """The 1-minute load average, the CPU count and the machine in words."""
    cpus = os.cpu_count() or 1
    return {
        "load_avg": round(os.getloadavg()[0], 2),
        "cpus": cpus,
        "machine": f"{cpus}-core {platform.machine()} CPU",
    }


def reset_peak_rss() -> bool:
    """Resets this process's peak resident memory (Linux `clear_refs` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_gib() -> float:
    """This process's peak resident memory since start or the last `reset_peak_rss`, in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB → GiB
    raise OSError("no VmHWM in /proc/self/status")


def is_loaded(load_avg: float, cpus: int) -> bool:
    """More runnable work than 3/4 of the cores: timings would measure the load."""
    return load_avg > 0.75 * cpus


def interleave(sides: Mapping[str, Callable[[], float]], *, repeats: int) -> dict[str, list[float]]:
    """Calls each side once per round, in order, for `repeats` rounds: {side: [seconds, ...]}."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            samples[name].append(float(run()))
    return samples


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max and relative spread ((max − min) / median) of one side's repeats."""
    median = statistics.median(samples)
    return {
        "median": median,
        "min": min(samples),
        "max": max(samples),
        "spread": (max(samples) - min(samples)) / median if median else 0.0,
    }


def best_threads(probe: Callable[[int], float], options: Sequence[int] = (1, 2)) -> int:
    """The thread count among `options` whose probe (seconds, lower is better) is fastest.

    Peers get their best setting: torch with 2 threads on 2 cores can lose to 1.
    """
    return best_setting(probe, options)


def best_setting(probe: Callable[[Any], float], options: Sequence[Any]) -> Any:
    """The option whose probe (seconds, lower is better) is fastest (e.g. a peer's threads)."""
    times = {option: probe(option) for option in options}
    return min(times, key=times.get)


def report(
    bench: str,
    samples: Mapping[str, Sequence[float]],
    *,
    start: Mapping[str, float | int | str],
    ratio: tuple[str, str] | None = None,
    ratio_key: str = "speedup",
    **extra,
) -> dict:
    """The JSON object a benchmark prints last.

    Args:
      bench: its name.
      samples: {side: seconds per repeat}.
      start: `machine_load()` taken before the first run.
      ratio: (slow side, fast side): `ratio_key` = median(slow) / median(fast).
      ratio_key: the key of that ratio, e.g. "speedup_vs_trl".
      extra: more keys (shapes, thread counts, ...).
    """
    end = machine_load()
    out: dict = {"bench": bench}
    stats = {name: summarize(s) for name, s in samples.items()}
    if ratio is not None:
        slow, fast = ratio
        out[ratio_key] = round(stats[slow]["median"] / stats[fast]["median"], 3)
    for name, st in stats.items():
        out[f"{name}_s_median"] = round(st["median"], 4)
        out[f"{name}_s_spread"] = round(st["spread"], 3)
        out[f"{name}_s_all"] = [round(x, 4) for x in samples[name]]
    out.update(extra)
    out.update(
        repeats=min(len(s) for s in samples.values()),
        load_avg_start=start["load_avg"],
        load_avg_end=end["load_avg"],
        cpus=start["cpus"],
        machine=start["machine"],
        # The start decides: by the end the benchmark's own threads are in the
        # load average (two busy threads on two cores approach 2).
        loaded=is_loaded(float(start["load_avg"]), int(start["cpus"])),
    )
    return out
