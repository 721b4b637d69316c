"""The simpul sensor carrier board's wiring: ESP32 GPIO numbers by signal.

The one pin map: ``board.py`` opens the buses on these pins (a board's ``/config.json`` may
override any under ``"pins"``), and the emulator (``hw/profiles.py``) wires its buses to the
same numbers. A plain dict, so the host can import it as ``firmware.pins``.
"""

PINS = {
    "i2c_scl": 22,  # BME280
    "i2c_sda": 21,
    "pms_tx": 17,  # PMS5003 on UART1
    "pms_rx": 16,
    "sonar_tx": 27,  # JSN-SR04T on UART2
    "sonar_rx": 26,
    "vbat_adc": 35,  # battery, through a 1:2 divider
}
