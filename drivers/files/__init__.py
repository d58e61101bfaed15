"""Mechanics shared by file-based drivers (local, Gluster): VDIs as files in a directory."""
