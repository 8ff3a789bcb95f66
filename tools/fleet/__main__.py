# `make fleet`: run every scenario under each policy, write docs/fleet.md and its chart.
#   PYTHONPATH=tools python -m fleet [--n 10000] [--backoff-max-s 240] [--scenarios a,b]
# Exit status 1 when the firmware's policy misses a goal.
import argparse
import os
import sys
import time
from multiprocessing import Pool

from fleet import ROOT, policies, report
from fleet.scenarios import BY_NAME, SCENARIOS
from fleet.sim import simulate


def parse(argv):
    p = argparse.ArgumentParser(prog="make fleet FLEET_ARGS=...", description=(
        "Simulate a fleet of real firmware Refreshers against a simulated server; write "
        "docs/fleet.md and its chart. Exit 1 when the firmware's policy misses a goal."))
    p.add_argument("--n", type=int, default=10000, help="devices (default 10000)")
    p.add_argument("--backoff-min-s", type=int, help="config.json backoff_min_s")
    p.add_argument("--backoff-max-s", type=int, help="config.json backoff_max_s")
    p.add_argument("--capacity", type=int, default=50, help="server requests/s (default 50)")
    p.add_argument("--over", choices=("412", "503"), default="412",
                   help="answer beyond capacity (default 412 + Retry-After)")
    p.add_argument("--retry-after", type=int, default=30, help="its Retry-After (default 30)")
    p.add_argument("--lost", type=float, default=0.005,
                   help="share of answers lost after the server rotated (default 0.005)")
    p.add_argument("--grace", type=int, default=3600, help="parent grace period, s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scenarios", default=",".join(s["name"] for s in SCENARIOS),
                   help="comma-separated: " + ", ".join(BY_NAME))
    p.add_argument("--policies", default=",".join(policies.NAMES),
                   help="comma-separated: " + ", ".join(policies.NAMES))
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "fleet.md"))
    a = p.parse_args(argv)
    a.scenarios = a.scenarios.split(",")
    a.policies = a.policies.split(",")
    for s in a.scenarios:
        if s not in BY_NAME:
            p.error("unknown scenario %r" % s)
    for s in a.policies:
        if s not in policies.NAMES:
            p.error("unknown policy %r" % s)
    a.chart = os.path.splitext(a.out)[0] + ".png"
    a.chart_name = os.path.basename(a.chart)
    return a


def _job(job):
    sc, pol, kw = job
    t = time.time()
    r = simulate(sc, pol, **kw)
    r["seconds"] = time.time() - t
    return r


def main(argv=None):
    a = parse(sys.argv[1:] if argv is None else argv)
    cfg = {}
    if a.backoff_min_s is not None:
        cfg["backoff_min_s"] = a.backoff_min_s
    if a.backoff_max_s is not None:
        cfg["backoff_max_s"] = a.backoff_max_s
    kw = {"n": a.n, "cfg": cfg, "seed": a.seed, "capacity": a.capacity, "over": a.over,
          "retry_after": a.retry_after, "lost": a.lost, "grace": a.grace}
    scs = [BY_NAME[s] for s in a.scenarios]
    jobs = [(sc, pol, kw) for sc in scs for pol in a.policies]
    jobs.sort(key=lambda j: j[1] != policies.NAIVE)  # the slowest first
    t0 = time.time()
    if a.jobs > 1:
        with Pool(a.jobs) as pool:
            results = pool.map(_job, jobs, chunksize=1)
    else:
        results = [_job(j) for j in jobs]
    elapsed = time.time() - t0
    order = {(sc["name"], p): i for i, (sc, p, _) in enumerate(
        (sc, p, 0) for sc in scs for p in a.policies)}
    results.sort(key=lambda r: order[(r["scenario"], r["policy"])])
    text, ok = report.markdown(scs, results, a, elapsed)
    with open(a.out, "w") as f:
        f.write(text)
    report.chart(scs, results, a.chart, a.n)
    for r in results:
        print("%-22s %-9s peak1 %5.2f%%  wasted %8d  recovery %-12s expired %d/%d  %.1fs" % (
            r["scenario"], r["policy"], r["peak1"], r["wasted"],
            report.minutes(r["recovery_s"]), r["expired_during"], r["expired_after"],
            r["seconds"]))
        if r["policy"] == policies.OURS:
            for what, met in report.goals(r):
                if not met:
                    print("   goal NOT met: " + what)
    print("%d runs in %.0f s; wrote %s and %s; every goal met: %s" % (
        len(results), elapsed, a.out, a.chart, "yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
