"""pincluster.ipfs."""
