# Board edges of firmware/main.py, one module per capability, imported only on a board:
# loop (main.py's loop there), wifi (join, NTP), led (status LED), sleep (light/deep sleep
# and RTC memory). An application that embeds regtoken brings its own.
