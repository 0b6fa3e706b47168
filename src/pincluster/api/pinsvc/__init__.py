"""The IPFS Pinning Service API (spec §10): ``/pins`` over the cluster, for kubo's ``ipfs pin remote`` and
other clients of ipfs/pinning-services-api-spec."""

from pincluster.api.pinsvc.server import PinSvcAPI

__all__ = ["PinSvcAPI"]
