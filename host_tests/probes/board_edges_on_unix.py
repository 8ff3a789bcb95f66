# firmware/regtoken/device.py under MicroPython's unix port (test_device.py): it imports,
# and its unix stand-ins behave. Prints ok at the end.
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

from regtoken import device  # noqa: E402


def main():
    assert device.UNIX
    assert device.connect({"ssid": "x"}, print) and device.sync_clock(print)
    led = device.Led({"pin": 2})
    led.show("healthy")
    led.off()
    device.sleep(0.01)
    assert device.rtc_load() is None
    print("ok")


if __name__ == "__main__":
    main()
