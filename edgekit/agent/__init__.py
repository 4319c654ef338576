"""The device agent: model slots with safe over-the-air updates (edgekit.agent.ota); the MQTT
side reports status, telemetry and deployment progress (docs/protocol.md)."""
