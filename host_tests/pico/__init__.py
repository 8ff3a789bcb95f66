# The emulated Raspberry Pi Pico tier (tools/rp2emu.py): host-side helpers, and the
# programs sent to the board (relay_transport.py, relay_device.py, boot_counter.py).
