# The refresher as an asyncio task beside the application's own:
#     asyncio.create_task(regtoken.aio.run(refresher))
# It sleeps until the next refresh is due (no polling), wakes early on force(), and its
# HTTP call yields to the event loop whenever a socket would block.


async def run(r):
    while True:
        await r.astep()
