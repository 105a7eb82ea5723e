"""The components ``amiflow serve`` supervises (see :mod:`amiflow_app.serve.supervisor`): each has ``run(stop)``,
``problem()`` and ``prometheus()``. Heavy imports happen inside, so ``--only api`` loads neither paho nor the poller.

:mod:`.acquisition` (ingest, poller), :mod:`.billing` (bridge, collections), :mod:`.http` (the API),
:mod:`.storage` (storage maintenance) and :mod:`.threads` (what they share).
"""

from amiflow_app.serve.components.acquisition import IngestComponent, PollerComponent
from amiflow_app.serve.components.billing import BridgeComponent, CollectionsComponent, EbillComponent
from amiflow_app.serve.components.http import ApiComponent
from amiflow_app.serve.components.storage import StorageComponent
from amiflow_app.serve.components.threads import wait

__all__ = [
    "ApiComponent",
    "BridgeComponent",
    "CollectionsComponent",
    "EbillComponent",
    "IngestComponent",
    "PollerComponent",
    "StorageComponent",
    "wait",
]
