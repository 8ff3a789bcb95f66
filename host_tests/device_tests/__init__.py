"""Tests of the firmware as a whole (firmware/): its public API and size, main.py's board path, and
end-to-end runs on the real MicroPython unix port."""
