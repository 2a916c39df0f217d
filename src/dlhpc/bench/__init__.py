"""bench layer."""

from __future__ import annotations

import os


def peer_env() -> dict[str, str]:
    """The environment a peer (Keras, a plain PyTorch loop, fastText) runs in: the user's, without
    what the dlhpc CLI set for itself (``DLHPC_DEFAULTED``, e.g. GOMP_SPINCOUNT)."""
    ours = set(filter(None, os.environ.get("DLHPC_DEFAULTED", "").split(",")))
    return {k: v for k, v in os.environ.items() if k not in ours | {"DLHPC_DEFAULTED"}}
