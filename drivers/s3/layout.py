"""Names of the objects of an S3 SR: the one place that knows them (docs/s3.md).

    <prefix><sr_uuid>/sr.json              the SR marker (chunk size, creation time)
    <prefix><sr_uuid>/vdi/<vdi_uuid>.json  one VDI: manifest (chunk index -> hash) + meta
    <prefix><sr_uuid>/chunks/<sha256>      one chunk, stored once, maybe zstd-compressed
    <prefix><sr_uuid>/lease/<vdi_uuid>     the single-writer lease of an active VDI

A VDI's identity is its manifest's name; nothing the server copies decides it.
"""

SR_MARKER = 'sr.json'
VDI_DIR = 'vdi/'
VDI_SUFFIX = '.json'
CHUNK_DIR = 'chunks/'
LEASE_DIR = 'lease/'


def sr_root(prefix, sr_uuid):
    return '%s%s/' % (prefix or '', sr_uuid)


def marker(root):
    return root + SR_MARKER


def manifest(root, uuid):
    return '%s%s%s%s' % (root, VDI_DIR, uuid, VDI_SUFFIX)


def manifests(root):
    return root + VDI_DIR


def chunk(root, digest):
    return root + CHUNK_DIR + digest


def chunks(root):
    return root + CHUNK_DIR


def digest_of_chunk(root, key):
    name = key[len(chunks(root)):]
    return name if len(name) == 64 and '/' not in name else None


def lease(root, uuid):
    return root + LEASE_DIR + uuid
