"""CBT on S3: what vdi_data_destroy keeps of a snapshot (docs/s3.md, docs/cbt.md).

A manifest maps each chunk index to the sha256 of its content, so the hashes alone
say which chunks changed between two manifests, exactly at chunk granularity:
data_destroy keeps them (``cbt_hashes``) and drops the chunk references; the next
scan's collector frees the chunks no other manifest shares."""

from framework import crash
from framework.errors import SRError
from drivers.s3 import layout, manifest


def data_destroy(driver, uuid):
    def change(doc):
        if doc['chunks'] or 'cbt_hashes' not in doc:
            crash.point('s3.data_destroy.before-put')
        manifest.drop_data(doc)
    if manifest.update(driver.client, driver.bucket, layout.manifest(driver.root, uuid),
                       change) is None:
        raise SRError('VDIMissing', uuid)
