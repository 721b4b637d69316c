"""The gateway's end of the fleet's control channel: signed desired state and commands in,
signed state, events and replies out, over the MQTT broker that carries its batches."""
