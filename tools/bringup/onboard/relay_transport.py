# mypy: ignore-errors
# Board side (MicroPython): an HTTP transport for a board with no network, for tests and
# benchmarks only (the firmware's own transports are regtoken.wire and regtoken.ureq).
# Each exchange goes over the serial console to the host (tools/bringup/rp2relay.py), which makes
# the real request to the reference server and sends the answer back. It is passed in
# through the refresher's seam: regtoken.open(cfg, transport=RelayTransport()).
#
# Board -> host, one line: @@relay@@["PUT", url, body (base64), {headers}, ticks_ms]
# Host -> board, one line: [status, {lower-case headers}, body (base64)]
#
# ticks_ms is the board's own time, so the host can run the server's clock at the
# emulator's speed (~0.3x real time). The refresher only ever sees request() and its
# documented result, as from its own transports.
import binascii
import json
import sys
import time

MARK = "@@relay@@"


class RelayTransport:
    def __init__(self):
        self.exchanges = 0

    def request(self, method, url, body, headers):
        b64 = binascii.b2a_base64(body or b"").decode().strip()
        print(MARK + json.dumps([method, url, b64, headers, time.ticks_ms()]))
        line = sys.stdin.readline()
        status, answer_headers, answer_b64 = json.loads(line)
        self.exchanges += 1
        return status, answer_headers, binascii.a2b_base64(answer_b64)
