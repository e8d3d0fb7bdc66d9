"""The hub wing: ``hf://`` URIs resolved to verified local files, publishing (push, pull), the card
and the preview grid. ``hello_format.hub.resolver`` is all the format's readers use, and it imports
huggingface_hub only when a hub URI is met; each name below is imported on first use.
"""

from hello_format.face import lazy_names

_HOMES = {
    "resolve": "resolver", "open_bundle": "resolver", "is_hub_uri": "resolver", "parse_hf_uri": "resolver",
    "file_uri": "resolver", "HubRef": "resolver",
    "pull": "publish", "push": "publish", "upload": "publish", "write_upload_folder": "publish",
    "render_card": "card", "render_preview": "card",
    "render_grid": "preview",
}

__all__ = list(_HOMES)

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
