"""pincluster.monitor."""
