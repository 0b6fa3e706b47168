"""pincluster.state."""
