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
        try:
            await r.astep()
        except Exception:  # no heap even for astep's coroutine: a second later, again
            await asyncio.sleep(1)


async def astep(self):
    try:
        return await _astep(self)
    except Exception:  # MemoryError outside an attempt (the clock's float); a cancel
        pass  # (CancelledError is no Exception) still ends the task
    # a second's wait, yielding: returned at once, run() would spin without ever letting
    # the other tasks run, one of which may hold the heap it needs
    await asyncio.sleep(1)
    return 1


async def _astep(self):
    w = self.due_in()
    if w != 0:
        # asleep until due, at most a day per wait (asyncio's ticks overflow after a few).
        # force() wakes it by cancelling this task's sleep: no Event (asyncio would load
        # asyncio.event for it) and no second task per wait. The tasks asleep are listed
        # (two, started by mistake, are each woken, and either may be cancelled)
        t = asyncio.current_task()
        s = self._sleeper
        if s is None:
            s = self._sleeper = []
        s.append(t)
        try:
            await asyncio.sleep(86400 if w is None else min(w, 86400))
        except asyncio.CancelledError:
            if t in s:  # still listed: not force(), which takes out each task it wakes;
                raise  # the application cancelled this one
        finally:
            if t in s:
                s.remove(t)
    if self.due_in() == 0:
        a = self._todo()
        if a is False:
            # in flight: another task on this refresher (two started by mistake, or an
            # earlier asyncio.run's left in the queue) sleeps until the call is over, not
            # presenting the same parent beside it (the 200 it gets revokes the 201's token)
            # force() does not bring it back meanwhile: until the call is over, or that
            # time (a loop abandoned mid-call, by a Ctrl-C, never ends it)
            # int(): timeout_s may be a float, which added to a time is a 32-bit port's
            # single float (config.py)
            self._busy = self._next = self._clock.now() + int(-(-self._cfg["timeout_s"] // 1)) + 1
            try:
                m, u, b, h = self._request()
                a = await self._http.arequest(m, u, b, h)
            except Exception as x:  # every transport failure is one failed attempt
                a = x
            finally:  # a cancel too
                self._busy = 0
        self._run(a)
    return self.due_in()


async def arequest(self, x):
    try:
        for _ in x:
            while next(self.p.ipoll(0), None) is None:
                self._left()
                await asyncio.sleep_ms(10)  # the other tasks run; at most 10 ms of lag
    finally:
        x.close()
    return self.ans
