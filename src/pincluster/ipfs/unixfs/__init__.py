"""UnixFS: files and directories on dag-pb (importer, layouts, chunkers, exporter)."""
