# Freeze regtoken into a MicroPython firmware build (micropython-lib manifest format):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/manifest.py
# A frozen package costs no filesystem space and no RAM for its bytecode. main.py stays on
# the board's filesystem (copy firmware/main.py, or call regtoken from your own main.py).
# metadata/include/package are given by MicroPython's manifest reader, not imported:
# ruff: noqa: F821
metadata(description="Keeps an IoT device's registration token alive", version="0.1.0")

# Keep what the port freezes already (asyncio, requests, ...), or the build loses it. Boards
# with a manifest of their own (RPI_PICO_W: the network modules) need
# include("$(BOARD_DIR)/manifest.py") here instead.
include("$(PORT_DIR)/boards/manifest.py")

package("regtoken", base_path="firmware")
# main.py's board edges (Wi-Fi, NTP, LED, sleep); an application with its own leaves it out
package("board", base_path="firmware")
