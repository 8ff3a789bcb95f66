# Board side (MicroPython), installed as boot.py: counts the board's resets (soft and
# hard) in /resets, so a test can see that mpremote soft-reset the board between steps.
try:
    with open("resets") as f:
        n = int(f.read())
except (OSError, ValueError):
    n = 0
with open("resets", "w") as f:
    f.write(str(n + 1))
