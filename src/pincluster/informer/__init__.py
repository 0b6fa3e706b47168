"""pincluster.informer."""
