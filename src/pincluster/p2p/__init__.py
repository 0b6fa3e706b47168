"""pincluster.p2p."""
