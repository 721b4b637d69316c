"""Boards as code: pin maps, sensor models and the emulated ESP32."""
