# Board edges of firmware/main.py, one module per capability, imported only on a board
# (never on the unix port): wifi (join, NTP), led (status LED), sleep (light/deep sleep
# and RTC memory). An application that embeds regtoken brings its own.
