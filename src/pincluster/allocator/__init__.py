"""pincluster.allocator."""
