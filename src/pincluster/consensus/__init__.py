"""pincluster.consensus."""
