"""The board tools: everything between a folder in boards/ and a running device, on a real
board or the unix port. Each module is a command (`python -m bringup.X
--help`, or the make target named beside it) or the library the commands share:

  boards.py         the board folders (boards/*/board.json): `make boards`, the stubs
  boardctl.py       RemoteBoard over mpremote: `make repl`, `logs`, `board-info`, `erase-token`
  deploy.py         mpy-cross firmware/ and copy what changed: `make deploy`
  provision.py      config.json + CA, validated by the firmware's own rules: `make provision`
  flash.py          erase and write MicroPython itself: `make flash`
  dist.py           a static mip index of the package: `make dist`
  romfs.py          the package as a ROMFS image, and its deploy: `make romfs`, `romfs-deploy`
  unixboard.py      a board directory on the unix port (layout, UnixBoard); tests and bench
  ptybridge.py      a pty a client opens like a serial port, relayed to a child
  virtual_board.py  the unix port behind that pty: `make virtual-board`
  run_demo.py       server + unix board rotating live: `make run`
  rp2emu.py         the emulated Raspberry Pi Pico (rp2040js) behind a pty: `make emu-board`
  rp2relay.py       the host side of a board's HTTP relayed over its console
onboard/: the MicroPython programs sent to a board (real files, not strings), among them
relay_transport.py, the board side of that relay.
"""
