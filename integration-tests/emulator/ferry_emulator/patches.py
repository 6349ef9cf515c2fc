"""Install all of the extension's patches into moto, once."""

from __future__ import annotations

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from . import asg, asg_api, consistency, data, ebs_api, ebs_models, speed

    asg.install()
    asg_api.install()
    ebs_models.install()
    data.install()
    ebs_api.install()
    speed.install()
    consistency.install()  # wraps speed's get_tags
    _installed = True
