# The emulated Raspberry Pi Pico tier (tools/bringup/rp2emu.py): the staging helper, and the
# programs sent to the board (relay_device.py, boot_counter.py; the relay transport itself
# is tools/bringup/onboard/relay_transport.py, shared with `make bench`).
