# Wi-Fi station and NTP.
import time


def connect(wifi, log, timeout_s=20, tries=3):
    """Join the configured Wi-Fi as a station. Cheap when the link is up, so the caller
    simply calls it again before each refresh to recover a dropped link."""
    import network

    sta = network.WLAN(network.STA_IF)
    if sta.isconnected():
        return True
    if not wifi or not wifi.get("ssid"):
        log("wifi: not configured")
        return False
    sta.active(True)
    for n in range(1, tries + 1):
        try:
            sta.disconnect()  # ESP32 refuses connect() while an old attempt is pending
        except OSError:
            pass  # nothing to drop
        try:
            sta.connect(wifi["ssid"], wifi.get("password") or "")
        except OSError as e:
            log("wifi: connect %d/%d failed: %s" % (n, tries, e))
            continue
        for _ in range(int(timeout_s * 10)):
            if sta.isconnected():
                log("wifi: connected to %s as %s" % (wifi["ssid"], sta.ipconfig("addr4")[0]))
                return True
            time.sleep_ms(100)
        log("wifi: no link after %ds (try %d/%d, status %s)" % (timeout_s, n, tries, sta.status()))
    return False


def sync_clock(log, tries=2, timeout_s=3):
    """Set the RTC from NTP. False when that fails: the caller then takes the time from
    the server's Date header instead."""
    import ntptime

    ntptime.timeout = timeout_s  # the default of 1 s is short for a cold DNS + NTP
    for n in range(1, tries + 1):
        try:
            ntptime.settime()
            log("ntp: clock set")
            return True
        except Exception as e:  # DNS failure, timeout, short answer: all mean "no NTP"
            log("ntp: try %d/%d failed: %r" % (n, tries, e))
    return False
