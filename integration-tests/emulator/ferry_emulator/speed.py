"""Speed patches of moto for many resources at once (a storm of dozens of groups), same answers.

* An EC2 resource's tags (``TaggedEC2Resource.get_tags``, used by every ``tag:`` filter and every
  response that lists tags) are read from the backend's tag map by resource id, instead of moto's scan of
  every tag of every resource with a regex each: a tag-filtered Describe was O(resources x all tags).
* moto's server looked up the list of its service packages on disk (``os.listdir`` + ``isdir`` of each)
  for every request, under its dispatch lock; the list is read once.

Both run under the emulator's global lock on the hot path of every EC2 request, so they bound how many
calls a second the emulator can answer.
"""

from __future__ import annotations

from typing import Any

from moto import backends
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix


def _get_tags(self: Any) -> list[dict[str, str]]:
    """As moto's ``describe_tags(filters={"resource-id": [self.id]})``, by a lookup."""
    ident = getattr(self, "id", None)
    if not ident:
        return []
    tags = self.ec2_backend.tags.get(ident)
    if not tags:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(ident), "")
    return [{"resource_id": ident, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


def install() -> None:
    TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    backends.list_of_moto_modules = list_of_moto_modules  # type: ignore[assignment]
