"""pincluster.pintracker."""
