# The refresher as an asyncio task beside the application's own:
#     asyncio.create_task(regtoken.aio.run(refresher))
# It sleeps until the next refresh is due (no polling), wakes early on force(), and its
# HTTP call yields to the event loop whenever a socket would block.
#
# Below run(): the bodies of Refresher.astep() and Wire.arequest(), here so that only an
# asyncio application loads them (their `self` is the refresher or the client).
import asyncio


async def run(r):
    while True:
        await r.astep()


async def astep(self):
    w = self.due_in()
    if w != 0:
        e = self._ev = self._ev or asyncio.Event()
        e.clear()
        # at most a day per wait: asyncio's ticks overflow after a few. A task sets the
        # event when the wait is over (wait_for would load asyncio.funcs and its tasks)
        t = None if w is None else asyncio.create_task(_alarm(e, min(w, 86400)))
        try:
            await e.wait()
        finally:
            if t:
                t.cancel()
    if self.due_in() == 0:
        if self._pending:
            a = self._pending
        else:
            try:
                m, u, b, h = self._request()
                a = await self.http.arequest(m, u, b, h)
            except Exception as x:  # every transport failure is one failed attempt
                a = x
        self._run(a)
    return self.due_in()


async def _alarm(e, s):
    await asyncio.sleep(s)
    e.set()


async def arequest(self, x):
    try:
        for _ in x:
            while next(self.p.ipoll(0), None) is None:
                self._left()
                await asyncio.sleep_ms(10)  # the other tasks run; at most 10 ms of lag
    finally:
        x.close()
    return self.ans
