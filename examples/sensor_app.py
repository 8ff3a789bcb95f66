# A sensor-style application that lets regtoken look after its registration token.
# Copy it to a board as main.py next to the regtoken package and a config.json.
#
# The refresher runs as one asyncio task; the application's own periodic job keeps its
# rhythm even while a refresh waits on a slow or silent server.
import asyncio
import time

import regtoken
from regtoken import aio

PERIOD_S = 0.2


def read_sensor():
    return time.ticks_ms() % 1000  # stands in for an ADC or I2C reading


async def sample(r):
    n = 0
    while True:
        n += 1
        st = r.status()
        print("app: tick %d t=%d reading=%d refresher=%s token=%s" % (
            n, time.ticks_ms(), read_sensor(), st["state"], st["token"]))
        await asyncio.sleep(PERIOD_S)


def on_token(token, expires):
    # the application's own cloud client would pick the new credential up here
    print("app: new token committed, expires %s" % expires)


def on_state(state, why):
    print("app: refresher is %s (%s)" % (state, why))


async def main():
    r = regtoken.open("config.json")
    r.on_token(on_token)
    r.on_state(on_state)
    asyncio.create_task(aio.run(r))
    await sample(r)


try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("app: stopped")
except regtoken.ConfigError as e:
    print("app: %s" % e)
