"""What the backup tests share (a module of its own: a name like conftest is ambiguous
once several test directories are collected together)."""

# the most a driver may over-report: one written byte may set every 64 KiB block of its
# granule (fakecbt: exact; s3: the chunk size conftest creates its SRs with; rbd: an
# RBD object, 4 MiB: through datapath=fuse a 6-byte write was reported as 64 KiB blocks
# all over its object)
GRANULE = {"fakecbt": 64 * 1024, "s3": 1 << 20, "rbd": 4 << 20}
