# The refresher as an asyncio task beside the application's own:
#     asyncio.create_task(regtoken.aio.run(refresher))
# It sleeps until the next refresh is due (no polling), wakes early on force(), and its
# HTTP call yields to the event loop whenever a socket would block.
import asyncio

try:
    from .refresher import Refresher  # noqa: F401  for type checkers
except ImportError:
    pass


async def run(r: Refresher) -> None:
    ev = asyncio.Event()
    r.wake = ev.set
    while True:
        wait = r.due_in()
        if wait == 0:
            if r.pending:
                r.step()  # a commit retry: flash only, no network
            else:
                r.settle(await r.acall())
            continue
        ev.clear()
        try:
            if wait is None:
                await ev.wait()
            else:
                await asyncio.wait_for(ev.wait(), wait)
        except asyncio.TimeoutError:
            pass
