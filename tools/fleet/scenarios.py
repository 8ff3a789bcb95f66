# The scenarios `make fleet` runs. Times are seconds from the moment the fleet was
# provisioned (every device got its first token then, and booted within 5 s). "event" is
# the outage or the power cut: recovery and expired tokens are counted against its end.
# "cfg" overrides the config for that scenario (the command line overrides both).
H = 3600
DAY = 24 * H

SCENARIOS: list[dict] = [
    {"name": "together", "title": "provisioned together, 24 h tokens, 3 days",
     "lifetime": DAY, "duration": 3 * DAY},
    {"name": "outage-2h", "title": "24 h tokens, 2 h server outage at the first refresh wave",
     "lifetime": DAY, "duration": DAY + 2 * H, "outages": [(12 * H, 14 * H)],
     "event": (12 * H, 14 * H)},
    {"name": "off-12h-4h", "title": "whole fleet off 12 h, boots within 5 s, 4 h of token life "
     "left", "lifetime": DAY, "duration": DAY + 2 * H, "power": (8 * H, 20 * H),
     "event": (8 * H, 20 * H)},
    {"name": "off-12h-7min", "title": "whole fleet off 12 h, boots within 5 s, 7 min of token "
     "life left", "lifetime": DAY, "duration": DAY + 2 * H,
     "power": (DAY - 7 * 60 - 12 * H, DAY - 7 * 60),
     "event": (DAY - 7 * 60 - 12 * H, DAY - 7 * 60)},
    {"name": "1h-outage-30m", "title": "1 h tokens, 30 min outage over the whole refresh "
     "wave, server back 10 min before the fleet's tokens expire", "lifetime": H,
     "duration": 4 * H, "outages": [(20 * 60, 50 * 60)], "event": (20 * 60, 50 * 60)},
    {"name": "1h-outage-30m-max3600", "title": "the same, with an operator's backoff_max_s "
     "of 3600: the expiry bound alone keeps the tokens", "lifetime": H, "duration": 4 * H,
     "outages": [(20 * 60, 50 * 60)], "event": (20 * 60, 50 * 60),
     "cfg": {"backoff_max_s": 3600}},
]
BY_NAME = {s["name"]: s for s in SCENARIOS}
