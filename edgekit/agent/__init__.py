"""The device agent: model slots with safe over-the-air updates (edgekit.agent.ota); the MQTT
side reports status, telemetry and deployment progress (docs/protocol.md)."""

__all__ = ["Agent", "AgentConfig", "load_config"]


def __getattr__(name: str):
    # lazy: the health-check subprocess imports edgekit.agent.healthcheck and needs none of this
    if name in __all__:
        from edgekit.agent import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'edgekit.agent' has no attribute {name!r}")
