"""The gateway's GPIO on a Raspberry Pi: a status LED, a button, the EN and IO0 lines of
wired boards, and the host's own sensors, all gpiozero devices with their pin factory
injected (``pin_factory=``); tests use gpiozero's MockFactory.

factory (which pin factory drives the pins), status (what the gateway's state is, and the
LED pattern that shows it), observe (that state read from the store), button (short press:
pairing window; long press: safe shutdown), lines (EN and IO0: reset and bootloader entry),
host (CPU temperature, disk usage, load average), channel (the local socket the control
process reaches the lines and the panel's state through), panel (all of it in the daemon).
"""
