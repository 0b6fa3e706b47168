"""The IPFS Cluster REST API (spec §1): an aiohttp application over the :class:`ClusterAPI` protocol."""

from pincluster.api.rest.server import ROUTES, RestAPI, Route, parse_add_params

__all__ = ["ROUTES", "RestAPI", "Route", "parse_add_params"]
