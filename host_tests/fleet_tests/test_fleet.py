# A small fleet through the simulator behind `make fleet` (tools/fleet): invariants of the
# firmware's policy, never timings. Each device is the real firmware Refresher.
import pytest
from fleet import policies
from fleet.__main__ import main
from fleet.scenarios import BY_NAME
from fleet.sim import simulate
from regtoken import policy

N = 200


def run(name, pol=policies.OURS, **kw):
    kw.setdefault("capacity", 2)  # 1 % of a 200-device fleet: the limit is hit and answered
    kw.setdefault("lost", 0.05)  # lost answers are common enough to be recovered often
    return simulate(BY_NAME[name], pol, n=N, **kw)


def assert_safe(r):
    assert r["past_expiry"] == 0, r["examples"]  # no retry past expiry - margin while valid
    assert r["stale_presented"] == 0  # always the committed token, never an older one
    assert r["server"]["410 revoked"] == 0 and r["server"]["410 expired"] == 0
    assert r["expired_during"] == 0 and r["expired_after"] == 0
    assert r["not_fresh_at_end"] == 0 and r["dead"] == 0  # every device fresh at the end


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_scenario_keeps_every_token(name):
    r = run(name)
    assert_safe(r)
    assert r["server"]["rotated"] >= N
    if BY_NAME[name].get("event"):
        assert r["recovery_s"] is not None  # every device fresh again after the event


def test_lost_answers_and_capacity_are_exercised_and_recovered():
    r = run("outage-2h", lost=0.2, capacity=1)
    assert r["server"]["lost answer"] > 10 and r["server"]["over capacity"] > 0
    assert_safe(r)


def test_503_beyond_capacity_also_recovers():
    assert_safe(run("off-12h-7min", over="503", capacity=1))


def test_the_checks_catch_a_policy_that_ignores_expiry():
    # the policy before issue 11, with its 3600 s cap: the same checks must fail
    r = run("1h-outage-30m", policies.PREVIOUS)
    assert r["past_expiry"] > 0 and r["expired_after"] > 0 and r["not_fresh_at_end"] > 0
    assert policy.backoff is policies._saved["backoff"]  # the swap is undone


def test_the_command_line_writes_the_report(tmp_path):
    out = tmp_path / "fleet.md"
    code = main(["--n", "100", "--scenarios", "outage-2h", "--policies", "regtoken,naive",
                 "--jobs", "1", "--backoff-max-s", "240", "--capacity", "5",
                 "--out", str(out)])
    text = out.read_text()  # 1 request is 1 % of 100 devices: goals are for real fleets
    assert code in (0, 1) and "backoff_max_s 240" in text and "| regtoken | naive |" in text
    assert "Goals (regtoken): peak 1 s" in text
    assert (tmp_path / "fleet.png").stat().st_size > 1000
