"""ferry's local AWS emulator: moto (EC2, Auto Scaling, SQS) plus lifecycle hooks, strict EBS rules,
timed states, faults on demand and a call log. Start it with ``python -m ferry_emulator --port N``."""

__all__ = ["install"]


def install() -> None:
    """Apply every patch to moto (idempotent)."""
    from . import patches

    patches.install()
