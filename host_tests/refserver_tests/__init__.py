# The reference server's tests (tools/refserver/), by capability; client.py talks to it.
