"""Run contenders side by side: each in a fresh interpreter, taking turns, several rounds.

The development machine has two cores that other jobs share, so one timing says little. Every
round runs each contender once in its own process (its peak RSS and CPU time are its own), the
order alternating from round to round, so that a burst of load falls on both sides alike; the
load average is recorded with every run. Reports give medians and ranges of wall time, of CPU
time (user + system, the process and its children), of peak RSS, and the ratio of the medians.

A contender is a Python snippet run with ``python -c``; it may print lines of its own and must
print nothing after its last line of output (the harness reads rusage from ``os.wait4``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds
    user: float
    system: float
    peak_mib: float
    load: float  # 1-minute load average when the run started
    output: str


@dataclass
class Contender:
    name: str
    code: str
    args: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.runs)

    def spread(self, attribute: str) -> tuple[float, float]:
        values = [getattr(r, attribute) for r in self.runs]
        return min(values), max(values)


# Prepended to every contender: at exit, print the process's own peak RSS (VmHWM) to stderr. The
# peak that ``os.wait4`` reports starts from the parent's RSS at the fork (Linux keeps it across
# exec), so a harness holding 250 MiB would make every contender look at least that big.
_PEAK = """
import atexit as _atexit, sys as _sys
def _peak():
    try:
        with open("/proc/self/status") as _status:
            _kib = next(line.split()[1] for line in _status if line.startswith("VmHWM:"))
        print(f"\\n@@peak_kib {_kib}", file=_sys.stderr)
    except Exception:
        pass
_atexit.register(_peak)
"""


def run_measured(code: str, args: list[str], env: dict | None = None) -> Run:
    """``python -c code args...`` to the end: its wall time, its own CPU times (from ``os.wait4``)
    and peak RSS (its own VmHWM where Linux gives it, else ``os.wait4``'s), and its output."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", _PEAK + code, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    out_chunks, err_chunks = [], []

    def drain(stream, chunks):
        for chunk in iter(lambda: stream.read(65536), b""):
            chunks.append(chunk)

    readers = [threading.Thread(target=drain, args=(process.stdout, out_chunks)),
               threading.Thread(target=drain, args=(process.stderr, err_chunks))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    for reader in readers:
        reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    out, err = b"".join(out_chunks).decode(), b"".join(err_chunks).decode()
    if process.returncode != 0:
        raise RuntimeError(f"contender failed ({process.returncode}):\n{err[-4000:]}")
    peaks = [line.split()[1] for line in err.splitlines() if line.startswith("@@peak_kib ")]
    peak_kib = int(peaks[-1]) if peaks else usage.ru_maxrss
    return Run(wall=wall, cpu=usage.ru_utime + usage.ru_stime, user=usage.ru_utime, system=usage.ru_stime,
               peak_mib=peak_kib / 1024, load=load, output=out)


def take_turns(contenders: list[Contender], rounds: int, prepare=None) -> None:
    """``rounds`` rounds; in each, every contender runs once, the order reversed every other round.
    ``prepare(contender, round)`` returns the extra arguments of that run (e.g. a fresh output
    folder)."""
    for k in range(rounds):
        order = contenders if k % 2 == 0 else list(reversed(contenders))
        for contender in order:
            extra = prepare(contender, k) if prepare else []
            run = run_measured(contender.code, [*contender.args, *extra])
            contender.runs.append(run)
            print(f"  round {k + 1}, {contender.name}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU "
                  f"(user {run.user:.2f}, system {run.system:.2f}), peak {run.peak_mib:.0f} MiB, load {run.load:.1f}",
                  flush=True)


def summary(ours: Contender, base: Contender, unit_rows: int | None = None) -> dict:
    """Medians, ranges and ratios (base / ours for time: above 1 means ours is faster)."""
    pairs = list(zip(ours.runs, base.runs))
    return {
        "rounds": len(pairs),
        "wall_ours": ours.median("wall"), "wall_base": base.median("wall"),
        "wall_ours_range": ours.spread("wall"), "wall_base_range": base.spread("wall"),
        "cpu_ours": ours.median("cpu"), "cpu_base": base.median("cpu"),
        "peak_ours": ours.median("peak_mib"), "peak_base": base.median("peak_mib"),
        "peak_ours_max": ours.spread("peak_mib")[1], "peak_base_min": base.spread("peak_mib")[0],
        "speed_ratio": base.median("wall") / ours.median("wall"),
        "speed_ratio_range": (min(b.wall / o.wall for o, b in pairs), max(b.wall / o.wall for o, b in pairs)),
        "cpu_ratio": base.median("cpu") / ours.median("cpu"),
        "cpu_ratio_range": (min(b.cpu / o.cpu for o, b in pairs), max(b.cpu / o.cpu for o, b in pairs)),
        "load": (min(r.load for r in ours.runs + base.runs), max(r.load for r in ours.runs + base.runs)),
        "rows": unit_rows,
    }


def report(title: str, ours: Contender, base: Contender, floors: dict[str, float] | None = None) -> dict:
    s = summary(ours, base)
    lo, hi = s["speed_ratio_range"]
    clo, chi = s["cpu_ratio_range"]
    print(f"\n{title}  ({s['rounds']} rounds, load average {s['load'][0]:.1f}-{s['load'][1]:.1f})")
    for c in (ours, base):
        wlo, whi = c.spread("wall")
        print(f"  {c.name:<28} wall median {c.median('wall'):6.2f} s ({wlo:.2f}-{whi:.2f}), CPU median "
              f"{c.median('cpu'):6.2f} s (user {c.median('user'):.2f}, system {c.median('system'):.2f}), "
              f"peak RSS median {c.median('peak_mib'):5.0f} MiB (max {c.spread('peak_mib')[1]:.0f})")
    print(f"  speed ratio (baseline wall / ferdata wall): median {s['speed_ratio']:.2f}x (rounds {lo:.2f}-{hi:.2f}x)")
    print(f"  CPU ratio   (baseline CPU / ferdata CPU):   median {s['cpu_ratio']:.2f}x (rounds {clo:.2f}-{chi:.2f}x)")
    print(f"  peak memory ferdata / baseline: {s['peak_ours'] / s['peak_base']:.2f}x "
          f"(worst round: {s['peak_ours_max']:.0f} MiB against the baseline's lowest {s['peak_base_min']:.0f} MiB)")
    if floors:
        for name, seconds in floors.items():
            print(f"  floor, {name}: {seconds:.2f} s")
    return s
