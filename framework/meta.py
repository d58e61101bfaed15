"""The VDI metadata the framework keeps on the backend, so xapi's view can be rebuilt.

A flat ``{str: str}`` record per volume. Drivers store and return it verbatim;
only this module knows its keys and how they map to xapi's VDI fields.
"""

NAME = 'name_label'
DESCRIPTION = 'name_description'
TYPE = 'type'
READ_ONLY = 'read_only'
IS_SNAPSHOT = 'is_a_snapshot'
SNAPSHOT_OF = 'snapshot_of'        # the uuid (not the ref) of the snapshotted VDI
SNAPSHOT_TIME = 'snapshot_time'

EPOCH = '19700101T00:00:00Z'
VDI_TYPES = ('user', 'system', 'suspend', 'crashdump', 'ha_statefile', 'metadata',
             'redo_log', 'rrd', 'pvs_cache', 'ephemeral')


def new(name='', description='', vdi_type='user', read_only=False, is_snapshot=False,
        snapshot_of='', snapshot_time=EPOCH):
    return {
        NAME: name, DESCRIPTION: description, TYPE: vdi_type,
        READ_ONLY: _flag(read_only), IS_SNAPSHOT: _flag(is_snapshot),
        SNAPSHOT_OF: snapshot_of, SNAPSHOT_TIME: snapshot_time or EPOCH,
    }


def from_record(record, uuid_of_ref):
    """Metadata as xapi currently has it for one VDI record."""
    parent = record.get('snapshot_of') or ''
    snapshot_of = uuid_of_ref(parent) if parent.startswith('OpaqueRef:') and \
        parent != 'OpaqueRef:NULL' else ''
    return new(record.get('name_label', ''), record.get('name_description', ''),
               record.get('type', 'user'), record.get('read_only', False),
               record.get('is_a_snapshot', False), snapshot_of,
               _time_text(record.get('snapshot_time')))


def flag(meta, key):
    return meta.get(key) == 'true'


def merged(stored, update):
    """``stored`` with ``update`` applied, keeping unknown keys drivers may hold."""
    result = dict(stored)
    result.update(update)
    return result


def _flag(value):
    if isinstance(value, str):
        return 'true' if value.lower() == 'true' else 'false'
    return 'true' if value else 'false'


def _time_text(value):
    # XenAPI DateTime arrives as xmlrpc DateTime or a plain string.
    if value is None:
        return EPOCH
    text = getattr(value, 'value', value)
    return str(text) or EPOCH
