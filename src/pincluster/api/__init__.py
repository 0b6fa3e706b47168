"""pincluster.api."""
