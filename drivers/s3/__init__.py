"""S3 driver: VDIs as content-addressed, compressed chunks plus one manifest object each."""
